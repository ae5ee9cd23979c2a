//! Every SQL statement the store sends, by name: what a release must keep working against the
//! next release's schema (expand/contract). `cargo xtask migrate --snapshot-statements` writes
//! them to [`STATEMENTS_FIXTURE`] at release time; `tests/schema.rs` prepares each statement of
//! that fixture (the previous release's) against the schema of this one.

use crate::sql;

/// The committed snapshot of the previous release's statements, relative to this crate.
pub const STATEMENTS_FIXTURE: &str = "tests/fixtures/previous-release-statements.txt";

/// `(name, text)` of every statement in `sql.rs`.
pub fn statements() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SELECT_ITEM", sql::SELECT_ITEM.text()),
        ("ITEM_EXISTS", sql::ITEM_EXISTS.text()),
        ("LIST_ITEMS", sql::LIST_ITEMS.text()),
        ("INSERT_ITEM", sql::INSERT_ITEM.text()),
        ("UPDATE_ITEM", sql::UPDATE_ITEM.text()),
        ("DELETE_ITEM", sql::DELETE_ITEM.text()),
        ("CLAIM_KEY", sql::CLAIM_KEY.text()),
        ("SELECT_KEY", sql::SELECT_KEY.text()),
        ("RECORD_KEY", sql::RECORD_KEY.text()),
        ("PRUNE_KEYS", sql::PRUNE_KEYS.text()),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_statement_of_sql_rs_is_listed() {
        // A statement added to sql.rs and not listed here would escape the release check.
        let source = include_str!("sql.rs");
        let declared: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub(crate) const "))
            .filter_map(|l| l.strip_suffix(": Sql = Sql {"))
            .collect();
        let listed: Vec<&str> = super::statements().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            declared, listed,
            "list every `Sql` constant of sql.rs in statements()"
        );
    }
}
