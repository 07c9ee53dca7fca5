"""A SMART on FHIR standalone launch against a running Chartroom, done the way a Python app
does it: PyPI `fhirclient` discovers the OAuth endpoints, builds the authorize URL (PKCE S256,
state, aud), exchanges the code in its callback handler, refreshes, and reads through its R4
models. Only the person's part, signing in and approving on the server's own pages, is played
here with `requests`; the forms are read with the standard library's HTML parser. The
id_token's signature is checked against jwks_uri with jwcrypto.

Usage: smart_launch_check.py BASE CLIENT_ID REDIRECT_URI USERNAME PASSWORD PATIENT_ID OTHER_PATIENT_ID

Prints one JSON summary line; exits non-zero with the failing step on stderr."""

import json
import sys
import urllib.parse
from html.parser import HTMLParser

import requests
from fhirclient import client
from fhirclient.models.condition import Condition
from fhirclient.models.encounter import Encounter
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException, FHIRPermissionDeniedException

SCOPE = "launch/patient openid fhirUser patient/*.rs offline_access"


class CheckFailed(Exception):
    pass


def require(ok, message):
    if not ok:
        raise CheckFailed(message)


class Forms(HTMLParser):
    """Every <form> on a page with its fields: inputs, selects (their options) and submit
    buttons, which is what a browser would submit."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self._select = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"method": (attrs.get("method") or "get").lower(),
                               "action": attrs.get("action") or "", "inputs": {}, "types": {},
                               "selects": {}, "buttons": []})
            return
        if not self.forms:
            return
        form = self.forms[-1]
        kind = (attrs.get("type") or "").lower()
        if tag == "input" and attrs.get("name"):
            if kind == "submit":
                form["buttons"].append((attrs["name"], attrs.get("value", "")))
            else:
                form["inputs"][attrs["name"]] = attrs.get("value") or ""
                form["types"][attrs["name"]] = kind or "text"
        elif tag == "button" and attrs.get("name") and kind in ("", "submit"):
            form["buttons"].append((attrs["name"], attrs.get("value", "")))
        elif tag == "select" and attrs.get("name"):
            self._select = attrs["name"]
            form["selects"][self._select] = []
        elif tag == "option" and self._select is not None:
            form["selects"][self._select].append(attrs.get("value"))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def post_form(page, browser, fill, step):
    """Parses the POST form on `page` (a 200 response), fills it like a person would and submits
    it without following a redirect, as the redirect goes to the app."""
    require(page.status_code == 200, f"{step}: expected a 200 page, got {page.status_code}: {page.text[:300]}")
    parser = Forms()
    parser.feed(page.text)
    forms = [f for f in parser.forms if f["method"] == "post"]
    require(forms, f"{step}: no <form method=\"post\"> on the page: {page.text[:300]}")
    form = forms[0]
    require("request" in form["inputs"], f"{step}: the form has no hidden 'request' field")
    fields = dict(form["inputs"])
    fields.update(fill(form))
    action = urllib.parse.urljoin(page.url, form["action"])
    return form, browser.post(action, data=fields, allow_redirects=False)


def belongs_to(resource, patient_id):
    subject = getattr(resource, "subject", None)
    reference = subject.reference if subject is not None else None
    return reference is not None and (reference == f"Patient/{patient_id}"
                                      or reference.endswith(f"/Patient/{patient_id}"))


def outcome(call):
    """(refused, result): refused when the server answers 403 or 404, the two acceptable
    refusals for data outside the patient's compartment."""
    try:
        return False, call()
    except (FHIRPermissionDeniedException, FHIRNotFoundException):
        return True, None


def verified_id_token(id_token, config):
    """The id_token's claims once its signature checks out against the server's jwks_uri, as an
    app that trusts fhirUser must do."""
    from jwcrypto import jwk, jwt

    keys = requests.get(config["jwks_uri"], headers={"Accept": "application/json"})
    require(keys.status_code == 200, f"jwks_uri {config['jwks_uri']}: {keys.status_code}")
    try:
        token = jwt.JWT(jwt=id_token, key=jwk.JWKSet.from_json(keys.text))
    except Exception as error:
        raise CheckFailed(f"the id_token does not verify against jwks_uri: {type(error).__name__}: {error}")
    return json.loads(token.claims)


def run(base, client_id, redirect_uri, username, password, own_id, other_id):
    state = {}
    smart = client.FHIRClient(settings={"app_id": client_id, "api_base": base,
                                        "redirect_uri": redirect_uri, "scope": SCOPE},
                              save_func=state.update)

    # fhirclient 4.4.0 discovers the endpoints from the CapabilityStatement (the SMART
    # oauth-uris extension on rest[0].security); with no authorize endpoint there it treats the
    # server as open and gives no URL.
    authorize_url = smart.authorize_url
    require(authorize_url, "fhirclient found no authorize endpoint in /metadata "
            "(rest[0].security extension http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris)")
    discovered = smart.server.auth.state
    require(discovered.get("token_uri"), "fhirclient found no token endpoint in /metadata")

    # The same endpoints must be in the SMART discovery document, which other libraries read.
    well_known = requests.get(urllib.parse.urljoin(smart.server.base_uri, ".well-known/smart-configuration"),
                              headers={"Accept": "application/json"})
    require(well_known.status_code == 200, f".well-known/smart-configuration: {well_known.status_code}")
    config = well_known.json()
    require(config.get("authorization_endpoint") == discovered["authorize_uri"]
            and config.get("token_endpoint") == discovered["token_uri"],
            f"/metadata and .well-known disagree on the endpoints: {discovered['authorize_uri']}, "
            f"{discovered['token_uri']} vs {config.get('authorization_endpoint')}, {config.get('token_endpoint')}")
    require("S256" in config.get("code_challenge_methods_supported", []), "S256 not in code_challenge_methods_supported")

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))
    require(query.get("code_challenge_method") == "S256" and query.get("code_challenge") and query.get("state"),
            f"the library's authorize URL lacks PKCE or state: {authorize_url}")

    # The person's browser: sign in, then approve.
    browser = requests.Session()
    sign_in = browser.get(authorize_url, allow_redirects=False)
    form, consent = post_form(sign_in, browser, lambda f: {"username": username, "password": password}, "sign-in page")
    require({"username", "password"} <= set(form["inputs"]), "the sign-in form lacks username/password fields")
    require(consent.status_code == 200, f"sign-in: expected the consent page, got {consent.status_code}: {consent.text[:300]}")
    again = Forms()
    again.feed(consent.text)
    require(not any("password" in f["inputs"] or "password" in f["types"].values() for f in again.forms),
            f"sign-in as {username!r} was refused (the sign-in form came back)")

    def approve(f):
        names = [b for b in f["buttons"] if b[0] == "decision"]
        require(("decision", "approve") in names and ("decision", "deny") in names,
                f"the consent form lacks the approve/deny buttons: {f['buttons']}")
        fill = {"decision": "approve"}
        if "patient" in f["selects"]:
            require(own_id in f["selects"]["patient"], f"patient {own_id} is not offered in the picker")
            fill["patient"] = own_id
        return fill

    _, redirect = post_form(consent, browser, approve, "consent page")
    require(redirect.status_code in (302, 303), f"approve: expected a redirect to the app, got {redirect.status_code}: {redirect.text[:300]}")
    location = redirect.headers.get("Location", "")
    require(location.startswith(redirect_uri), f"approve: redirected to {location!r}, not to {redirect_uri}")

    # Back in the app: the library checks state and exchanges the code with its PKCE verifier.
    smart.handle_callback(location)
    context = smart.launch_context or {}
    require(smart.patient_id == own_id, f"patient context is {smart.patient_id!r}, expected {own_id}")
    require(smart.server.auth.refresh_token, "no refresh_token although offline_access was asked for")
    id_token = context.get("id_token")
    require(id_token, "no id_token although openid was asked for")
    claims = verified_id_token(id_token, config)
    require(claims.get("aud") == client_id or client_id in (claims.get("aud") or []),
            f"id_token aud is {claims.get('aud')!r}, not the client id")
    require(claims.get("iss") == config.get("issuer"), f"id_token iss {claims.get('iss')!r} is not the issuer {config.get('issuer')!r}")
    require(claims.get("fhirUser"), "id_token has no fhirUser claim although fhirUser was asked for")

    patient = smart.patient  # read through the library (None when it got a 404)
    require(patient is not None and patient.id == own_id, f"reading the context patient through fhirclient gave {patient}")

    counts = {}
    for model in (Observation, Condition, Encounter):
        name = model.resource_type
        found = list(model.where(struct={"patient": own_id}).perform_resources_iter(smart.server))
        strays = [r.id for r in found if not belongs_to(r, own_id)]
        require(not strays, f"{name}?patient={own_id} returned other patients' resources: {strays[:5]}")
        counts[name] = len(found)
    require(sum(counts.values()) > 0, f"no Observation, Condition or Encounter for patient {own_id}: {counts}")

    # A search without a patient parameter: confined to the compartment, or refused outright.
    refused, found = outcome(lambda: list(Observation.where(struct={"_count": "50"}).perform_resources_iter(smart.server)))
    if not refused:
        strays = [r.id for r in found if not belongs_to(r, own_id)]
        require(not strays, f"Observation search without a patient returned other patients' resources: {strays[:5]}")
    unfiltered = "refused" if refused else "confined"

    refused, _ = outcome(lambda: Patient.read(other_id, smart.server))
    require(refused, f"reading Patient/{other_id} with patient {own_id}'s token was not refused (403/404)")
    refused, found = outcome(lambda: list(Observation.where(struct={"patient": other_id}).perform_resources_iter(smart.server)))
    require(refused or not found, f"Observation?patient={other_id} returned {len(found or [])} resources")

    # What the library does on a 401: use the refresh token for a new access token.
    old_token = smart.server.auth.access_token
    require(smart.reauthorize(), "refreshing with the refresh_token failed")
    require(smart.server.auth.access_token and smart.server.auth.access_token != old_token,
            "the refresh gave no new access token")
    require(Patient.read(own_id, smart.server).id == own_id, "the refreshed token cannot read the patient")

    return {"patient": own_id, "resources": sum(counts.values()), "by_type": counts,
            "scope": context.get("scope"), "other_refused": True, "unfiltered_search": unfiltered,
            "id_token": True, "refresh_token": True, "refreshed": True}


def main(argv):
    if len(argv) != 8:
        sys.exit(__doc__)
    try:
        summary = run(*argv[1:])
    except CheckFailed as failure:
        sys.exit(f"smart_launch_check: FAIL: {failure}")
    except Exception as error:  # the library's own exceptions carry the HTTP response
        response = getattr(error, "response", None)
        detail = f" [{response.status_code} {response.url}: {response.text[:300]}]" if response is not None else ""
        sys.exit(f"smart_launch_check: FAIL: {type(error).__name__}: {error}{detail}")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv)
