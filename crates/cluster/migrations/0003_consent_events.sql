-- Patient authorisations as event streams, one per person (`consents.log` in the embedded
-- store): a consent recorded, a consent revoked. A node verifying a code it does not know
-- reads that person's stream. (The `consents` table of 0001 is a row sketch no code uses.)
CREATE TABLE consent_events (LIKE task_events INCLUDING ALL);
