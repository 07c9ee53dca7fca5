"""A SMART Backend Services client doing a Bulk Data export from a running Chartroom: PyPI
`smart-fetch` (SMART Health IT's bulk export tool; its backend-services auth lives in
`cumulus-fhir-support`), run as its users run it, `smart-fetch bulk`. It reads
.well-known/smart-configuration, signs a client assertion (RS384 or ES384) for a
client_credentials token, kicks off $export, polls honouring Retry-After, downloads every
file with the Bearer token and DELETEs the job.

Usage:
  bulk_client_check.py keys OUTDIR [--alg ES384|RS384] [--format pem|jwks]
      The client's key pair, made with the library's own JOSE package (jwcrypto):
      OUTDIR/jwks.json holds the public key only (what `chartroom client add --jwks` takes);
      OUTDIR/private.pem or OUTDIR/private.jwks is the private key file smart-fetch reads.
  bulk_client_check.py export BASE CLIENT_ID OUTDIR [--type T,T] [--group ID] [--timeout S]
      A whole export into OUTDIR/files; prints one JSON line {resource type: NDJSON lines}.
  bulk_client_check.py assertion OUTDIR CLIENT_ID TOKEN_URL
      Prints the header and claims of the client assertion the library would sign (for
      diagnosing a refused token request).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

from jwcrypto import jwk

OUTPUT_FILE = re.compile(r"^([A-Z][A-Za-z]+)\.\d+\.ndjson$")
CURVES = {"ES384": {"kty": "EC", "crv": "P-384"}, "RS384": {"kty": "RSA", "size": 2048}}


def fail(message):
    sys.exit(f"bulk_client_check: FAIL: {message}")


def private_key_file(outdir):
    found = [os.path.join(outdir, n) for n in ("private.pem", "private.jwks") if os.path.exists(os.path.join(outdir, n))]
    if len(found) != 1:
        fail(f"expected exactly one of private.pem / private.jwks in {outdir} (run `keys` first), found {found}")
    return found[0]


def keys(args):
    os.makedirs(args.outdir, exist_ok=True)
    for stale in ("private.pem", "private.jwks"):
        if os.path.exists(os.path.join(args.outdir, stale)):
            os.remove(os.path.join(args.outdir, stale))
    key = jwk.JWK.generate(**CURVES[args.alg])
    # smart-fetch puts the RFC 7638 thumbprint in the JWT header as `kid` when it loads a PEM
    # file (jwcrypto does that on import), so the registered public key carries the same kid.
    kid = key.thumbprint()
    if args.format == "pem":
        private_path = os.path.join(args.outdir, "private.pem")
        with open(private_path, "wb") as f:
            f.write(key.export_to_pem(private_key=True, password=None))
    else:
        # From a JWKS, smart-fetch takes the first key with "sign" in key_ops, a kid and an alg.
        private = {**key.export_private(as_dict=True), "kid": kid, "alg": args.alg, "key_ops": ["sign"]}
        private_path = os.path.join(args.outdir, "private.jwks")
        with open(private_path, "w") as f:
            json.dump({"keys": [private]}, f)
    os.chmod(private_path, 0o600)
    # Shaped like the JWKS example in the SMART Backend Services spec.
    public = {**key.export_public(as_dict=True), "kid": kid, "alg": args.alg, "key_ops": ["verify"]}
    with open(os.path.join(args.outdir, "jwks.json"), "w") as f:
        json.dump({"keys": [public]}, f, indent=2)
    print(json.dumps({"kid": kid, "alg": args.alg, "jwks": os.path.join(args.outdir, "jwks.json"), "private": private_path}))


def assertion(args):
    import cumulus_fhir_support as cfs
    from cumulus_fhir_support import auth

    # The same loading path as `smart-fetch --smart-key FILE`, then the library's own signer.
    fhir = cfs.FhirClient.create_for_cli("http://unused.invalid/", [], smart_client_id=args.client_id,
                                         smart_key=private_key_file(args.outdir))
    signer = fhir._auth
    if not isinstance(signer, auth.JwtAuth):
        fail(f"the key file did not give a JWT signer but {type(signer).__name__}")
    signer._config = {"token_endpoint": args.token_url}
    token = signer._make_signed_jwt()
    from jwcrypto import jwt

    with open(os.path.join(args.outdir, "jwks.json")) as f:
        public = jwk.JWKSet.from_json(f.read())
    verified = jwt.JWT(jwt=token, key=public)  # signature checked against the public JWKS
    print(json.dumps({"header": json.loads(verified.header), "claims": json.loads(verified.claims)}))


def count_files(folder):
    """NDJSON lines per resource type in smart-fetch's output layout (TYPE.NNN.ndjson), checking
    each line is a resource of the file's type."""
    counts = {}
    for name in sorted(os.listdir(folder)):
        match = OUTPUT_FILE.match(name)
        if not match:
            continue  # its log.ndjson, .metadata and subfolders
        kind = match.group(1)
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                resource = json.loads(line)
                if resource.get("resourceType") != kind:
                    fail(f"{name} line {number} is a {resource.get('resourceType')}, not a {kind}")
                counts[kind] = counts.get(kind, 0) + 1
    return counts


def export(args):
    key_file = private_key_file(args.outdir)
    files = os.path.join(args.outdir, "files")
    # smart-fetch resumes a half-done export it finds in the folder; every run here is fresh.
    shutil.rmtree(files, ignore_errors=True)
    command = [sys.executable, "-m", "smart_fetch.cli.main", "bulk", files,
               "--fhir-url", args.base, "--smart-client-id", args.client_id, "--smart-key", key_file,
               # plain .ndjson files, and no Observation category _typeFilter added on its own
               "--no-compression", "--no-default-filters"]
    if args.type:
        command += ["--type", args.type]
    if args.group:
        command += ["--group", args.group]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}
    try:
        # Its progress output goes to stderr so that stdout stays one JSON line.
        done = subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        fail(f"smart-fetch did not finish within {args.timeout}s (it waits 60s between polls when "
             "there is no Retry-After, and minutes between retries of a 5xx)")
    if done.returncode != 0:
        fail(f"smart-fetch bulk exited {done.returncode}")
    if not os.path.isdir(files):
        fail("smart-fetch wrote no output folder")
    counts = count_files(files)
    errors = os.path.join(files, "error")
    if os.path.isdir(errors):
        issues = count_files(errors).get("OperationOutcome", 0)
        if issues:
            print(f"bulk_client_check: the server reported {issues} OperationOutcome(s) in the error files", file=sys.stderr)
    log = os.path.join(files, "log.ndjson")
    events = [json.loads(line)["eventId"] for line in open(log, encoding="utf-8")] if os.path.exists(log) else []
    if "export_complete" not in events:
        fail(f"smart-fetch's export log has no export_complete event: {events}")
    if not counts:
        fail("the export produced no NDJSON resources")
    print(json.dumps(counts, sort_keys=True), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    k = commands.add_parser("keys")
    k.add_argument("outdir")
    k.add_argument("--alg", choices=sorted(CURVES), default="ES384")
    k.add_argument("--format", choices=["pem", "jwks"], default="pem")
    k.set_defaults(func=keys)
    e = commands.add_parser("export")
    e.add_argument("base")
    e.add_argument("client_id")
    e.add_argument("outdir")
    e.add_argument("--type", help="comma separated resource types (default: every type smart-fetch exports that /metadata lists)")
    e.add_argument("--group", help="export Group/ID/$export instead of the whole system")
    e.add_argument("--timeout", type=int, default=600)
    e.set_defaults(func=export)
    a = commands.add_parser("assertion")
    a.add_argument("outdir")
    a.add_argument("client_id")
    a.add_argument("token_url")
    a.set_defaults(func=assertion)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
