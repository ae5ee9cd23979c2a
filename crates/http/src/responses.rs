//! The reusable problem+json responses of the spec (`#/components/responses/...`) that handlers
//! name in their `#[utoipa::path]` (`(status = 404, response = NotFound)`).

use utoipa::ToResponse;
use utoipa::ToSchema;
use utoipa::openapi::header::Header;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{Content, Object, RefOr, Schema, Type};

use crate::problem::{PROBLEM_JSON, Problem};

fn problem_response(description: &str) -> Response {
    let mut response = ResponseBuilder::new().description(description);
    if description.contains("Retry-After") {
        response = response.header(
            "Retry-After",
            Header::builder()
                .schema(Object::with_type(Type::Integer))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        );
    }
    response
        .content(
            PROBLEM_JSON,
            Content::new(Some(RefOr::<Schema>::Ref(
                utoipa::openapi::Ref::from_schema_name(Problem::name()),
            ))),
        )
        .build()
}

macro_rules! problem_responses {
    ($($name:ident => $description:literal,)*) => {$(
        #[doc = $description]
        #[derive(Debug)]
        pub(crate) struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem_response($description).into())
            }
        }
    )*};
}

problem_responses! {
    BadRequest => "A malformed parameter, header or body (not JSON at all).",
    NotFound => "No item with this id.",
    PreconditionFailed => "`If-Match` does not match the item's current ETag.",
    PayloadTooLarge => "The request body exceeds 64 KiB.",
    UnsupportedMediaType => "The body is not of an accepted JSON media type (UTF-8).",
    Unprocessable => "The body is JSON but breaks a rule, or the Idempotency-Key was used with another body.",
    Unavailable => "The database cannot be reached right now; retry after `Retry-After` seconds.",
    NoSuchFile => "The API reference page has no file of this name.",
    IdempotentItemGone => "A retry with this `Idempotency-Key`: the create was carried out, but its item has been deleted since.",
}
