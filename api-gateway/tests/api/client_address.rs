//! The one client address the gateway passes on (X-Forwarded-For), derived from the TCP peer and,
//! only behind TRUSTED_PROXIES, from the X-Forwarded-For the proxies wrote.
use crate::support;

async fn login_with_forwarded_for(gateway: &support::TestGateway, lines: &[&str]) {
    let mut request = gateway
        .client
        .post(gateway.url("/users/login"))
        .json(&serde_json::json!({ "email": "a@example.com", "password": "password" }));
    for line in lines {
        request = request.header("x-forwarded-for", *line);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn without_trusted_proxies_the_tcp_peer_is_passed_on_whatever_the_client_claims() {
    let gateway = support::start(&[]).await;
    login_with_forwarded_for(&gateway, &["203.0.113.9"]).await;
    login_with_forwarded_for(&gateway, &[]).await;
    let me = gateway.client.get(gateway.url("/users/me")).header("x-forwarded-for", "6.6.6.6").send().await.unwrap();
    assert_eq!(me.status(), 401, "no token: refused at the edge");
    assert_eq!(gateway.users.forwarded_for(), vec![Some("127.0.0.1".to_owned()), Some("127.0.0.1".to_owned())]);
    gateway.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_passed_on_alone() {
    // The test client connects from 127.0.0.1: it plays the load balancer in front of the gateway.
    let gateway = support::start(&[("TRUSTED_PROXIES", "127.0.0.0/8, 10.0.0.0/8")]).await;
    login_with_forwarded_for(&gateway, &["6.6.6.6, 203.0.113.9, 10.1.2.3"]).await;
    login_with_forwarded_for(&gateway, &["6.6.6.6", "198.51.100.4"]).await;
    login_with_forwarded_for(&gateway, &["[2001:db8::7]:443"]).await;
    login_with_forwarded_for(&gateway, &[]).await;
    assert_eq!(
        gateway.users.forwarded_for(),
        vec![
            Some("203.0.113.9".to_owned()),
            Some("198.51.100.4".to_owned()),
            Some("2001:db8::7".to_owned()),
            Some("127.0.0.1".to_owned()),
        ],
        "forged entries to the left are dropped; without a header the proxy itself is the client"
    );
    gateway.stop().await;
}
