//! The SMART client registry: what may be registered, exact redirect URIs, revocation.

use chartroom_privacy::clients::check_redirect_uri;
use chartroom_privacy::{ClientAuth, Clients};

#[test]
fn redirect_uris_are_https_or_the_machine_itself_and_never_carry_fragments() {
    for good in [
        "https://app.example.org/callback",
        "https://app.example.org:8443/cb?x=1",
        "http://localhost:8000/callback",
        "http://127.0.0.1/cb",
        "http://[::1]:9000/cb",
    ] {
        assert!(check_redirect_uri(good).is_ok(), "{good}");
    }
    for (bad, why) in [
        ("http://app.example.org/callback", "plain http"),
        ("https://app.example.org/cb#frag", "fragment"),
        ("/callback", "absolute"),
        ("https:///cb", "no host"),
        ("https://user:pw@app.example.org/cb", "user information"),
        ("https://app.example.org/c b", "ASCII"),
        ("javascript://alert(1)", "https"),
        ("http://localhost.evil.org/cb", "plain http"),
        ("", "ASCII"),
    ] {
        let error = check_redirect_uri(bad).expect_err(bad).to_string();
        assert!(error.contains(why), "{bad}: {error}");
    }
}

#[test]
fn clients_are_registered_matched_exactly_listed_and_revoked() {
    let dir = testkit::temp_dir("privacy-clients");
    let clients = Clients::open(&dir).unwrap();
    let app = clients
        .add("Patient app", &["https://app.example.org/callback".to_string()], ClientAuth::Public)
        .unwrap();
    assert!(app.id.starts_with("cl_") && app.id.len() > 20, "{}", app.id);
    assert!(app.redirects_to("https://app.example.org/callback"));
    for near in [
        "https://app.example.org/callback/",
        "https://app.example.org/callback?x=1",
        "https://APP.example.org/callback",
        "https://app.example.org/callbac",
    ] {
        assert!(!app.redirects_to(near), "{near} is not the registered URI");
    }
    // A public client without a redirect URI, an invalid one, a bad JWKS: refused.
    assert!(clients.add("No way back", &[], ClientAuth::Public).is_err());
    assert!(clients.add("Bad", &["http://evil.example/cb".to_string()], ClientAuth::Public).is_err());
    assert!(clients.add("", &["https://a.example/cb".to_string()], ClientAuth::Public).is_err());
    let not_keys = ClientAuth::PrivateKeyJwt { jwks: "{\"keys\": []}".into() };
    assert!(clients.add("Registry", &[], not_keys).is_err());
    // A backend service with keys needs no redirect URI.
    let (signer, _) = chartroom_privacy::jwt::Signer::generate_es256("k1").unwrap();
    let jwks = serde_json::json!({"keys": [signer.public_jwk()]}).to_string();
    let service = clients.add("Registry", &[], ClientAuth::PrivateKeyJwt { jwks: jwks.clone() }).unwrap();

    let listed = clients.list().unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [app.id.as_str(), service.id.as_str()]
    );
    assert_eq!(clients.get(&service.id).unwrap().unwrap().auth, ClientAuth::PrivateKeyJwt { jwks });
    assert!(clients.revoke(&app.id).unwrap());
    assert!(!clients.revoke(&app.id).unwrap());
    assert!(clients.get(&app.id).unwrap().is_none());
    // Reopened, the registry is as left.
    let again = Clients::open(&dir).unwrap();
    assert_eq!(again.list().unwrap().len(), 1);
}
