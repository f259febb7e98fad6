"""The escalation ladder (a pure policy) and its apprise notifier. No prefect import here."""
