"""fhirpy against a running Chartroom: search, count(), paging, include, create, update,
patch() and delete. Usage: fhirpy_check.py BASE_URL TOKEN. Exits non-zero at the first
step that fails, naming it."""

import sys

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

base, token = sys.argv[1], sys.argv[2]
client = SyncFHIRClient(base, authorization=f"Bearer {token}")


def step(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} fhirpy: {name} {detail}".rstrip(), flush=True)
    if not ok:
        sys.exit(1)


patients = client.resources("Patient")
total = patients.count()
step("count() of Patient", isinstance(total, int) and total > 0, f"({total})")

first_page = patients.limit(5).fetch()
step("search, first page of 5", len(first_page) == 5)

everyone = patients.limit(7).fetch_all()
ids = [p.id for p in everyone]
step("paging through every Patient with fetch_all()", len(ids) == total and len(set(ids)) == total,
     f"({len(ids)} of {total})")

female = patients.search(gender="female").count()
male = patients.search(gender="male").count()
step("count() with a search parameter", 0 < female < total and female + male <= total,
     f"(female {female}, male {male})")

observations = client.resources("Observation")
some = observations.limit(3).fetch()
step("Observation search", len(some) == 3)
subject = some[0]["subject"]["reference"]
bundle = observations.search(subject=subject).include("Observation", "subject").limit(5).fetch_raw()
included = [e.resource for e in bundle.entry if e.search.mode == "include"]
step("_include of the subject", len(included) == 1 and f"Patient/{included[0].id}" == subject)
step("Bundle.total on a search", isinstance(bundle.get("total"), int) and bundle.total >= 1)

created = client.resource(
    "Patient",
    name=[{"family": "Compatibility", "given": ["Fhirpy"]}],
    gender="female",
    birthDate="1990-04-01",
    active=True,
)
created.save()
step("create", bool(created.id) and created.meta.versionId == "1", f"(Patient/{created.id})")

created["telecom"] = [{"system": "phone", "value": "555-0100"}]
created.save()
step("update", created.meta.versionId == "2" and created.telecom[0].value == "555-0100")

created.patch(active=False)
step("patch() of the resource (merge of one field)", created.active is False and created.meta.versionId == "3")
fresh = client.reference("Patient", created.id).to_resource()
step("patched resource read back whole", fresh.active is False and fresh.name[0].family == "Compatibility"
     and fresh.telecom[0].value == "555-0100")

patched = client.patch("Patient", created.id, birthDate="1991-05-02", telecom=None)
step("client.patch() with a null removing an element", patched["birthDate"] == "1991-05-02"
     and "telecom" not in patched and patched["meta"]["versionId"] == "4")

found = patients.search(family="Compatibility").fetch()
step("search finds the new Patient", [p.id for p in found] == [created.id])

created.delete()
try:
    client.reference("Patient", created.id).to_resource()
    step("delete", False, "(still readable)")
except ResourceNotFound:
    step("delete", True)
step("count() after delete", patients.count() == total)
print("fhirpy: every step passed")
