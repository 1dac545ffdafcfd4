-- Shared documents for the regional platform (issue 20's outbox, `regional.log` in the
-- embedded store): an event stream per document, like the other outboxes.
CREATE TABLE regional_events (LIKE task_events INCLUDING ALL);
