//! The compose file of the compose tests and of the rollout benchmark's
//! recreate scenarios, which include this file with `#[path]`.

/// One service, `service`, on `image`, routed by teal under `prefix`, with
/// `DEPLOY` in its environment: the file written again with another
/// `deploy` is a changed config, which `up -d` recreates the container for.
/// The healthcheck makes teal route a container only once it answers, so a
/// held request is never released to one that is not listening yet (see
/// docs/operations.md); `init` makes the app exit at once on SIGTERM.
pub fn one_service(image: &str, prefix: &str, service: &str, deploy: &str) -> String {
    format!(
        r#"services:
  {service}:
    image: {image}
    init: true
    labels:
      {prefix}.service: {service}
    environment:
      DEPLOY: "{deploy}"
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 2s
      start_period: 30s
"#
    )
}
