"""Cloud link: the edge API client, enrolment and the cloud's config and commands."""
