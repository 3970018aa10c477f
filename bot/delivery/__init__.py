"""Every message the bot writes about a job, along the job's path: its record of where the
messages are (record), the roads to the member (routes), the card while it waits and renders
(progress), the clip (upload), and the subscriber that routes job events to them (events)."""
