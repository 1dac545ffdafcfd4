-- What a serving node asks besides the report store's own queries (issue 19).
-- C-FIND / QIDO by Patient ID: the DICOM Patient ID as sent, inside the instance's record.
CREATE INDEX instances_patient_id ON instances ((record->>'patient_id'), study_uid);
-- The audit trail in the cluster's order for the privacy officer's view and the statistics:
-- `id` numbers every record across nodes in the order they were committed (paging), and the
-- patient and actor lookups read it in that order (replacing 0001's indexes by time).
ALTER TABLE audit_records ADD COLUMN id bigserial;
CREATE UNIQUE INDEX audit_records_id ON audit_records (id);
DROP INDEX audit_records_patient;
DROP INDEX audit_records_actor;
CREATE INDEX audit_records_patient ON audit_records (patient, id) WHERE patient IS NOT NULL;
CREATE INDEX audit_records_actor ON audit_records (actor, id);
-- The person keys a record names besides its patient (`detail.persons`, e.g. a search's
-- answer), so that a patient's view finds the searches that returned them.
ALTER TABLE audit_records ADD COLUMN persons jsonb NOT NULL DEFAULT '[]';
UPDATE audit_records SET persons = convert_from(record, 'UTF8')::jsonb #> '{detail,persons}'
 WHERE jsonb_typeof(convert_from(record, 'UTF8')::jsonb #> '{detail,persons}') = 'array';
CREATE INDEX audit_records_persons ON audit_records USING gin (persons);
