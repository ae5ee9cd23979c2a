variable "notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) every alert of stage goes to. No default: apply needs at least one (TF_VAR_notification_channels or a *.tfvars file), or no alert reaches anyone."

  validation {
    condition     = length(var.notification_channels) >= 1
    error_message = "Set at least one notification channel: an alert nobody receives does not exist."
  }
}
