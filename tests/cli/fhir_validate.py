"""Validates FHIR R4 (4.0.1) JSON files with fhir.resources 6.4 (pydantic models of the R4
specification: unknown elements, wrong types, missing required elements and bad codes of
required bindings are errors). Usage: fhir_validate.py FILE... ; exit 1 on the first error."""
import json
import sys

from fhir.resources import get_fhir_model_class


def check(obj):
    cls = get_fhir_model_class(obj["resourceType"])
    cls.parse_obj(obj)
    for e in obj.get("entry", []):
        r = e["resource"]
        get_fhir_model_class(r["resourceType"]).parse_obj(r)
        n[0] += 1


n = [0]
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    try:
        check(data)
    except Exception as e:  # noqa: BLE001 - report any validation failure
        print(f"{path}: {e}")
        sys.exit(1)
print(f"valid: {len(sys.argv) - 1} bundles, {n[0]} resources")
