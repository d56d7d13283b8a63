//! An old container -> the `docker create` of its replacement. Pure.
//!
//! The replacement gets the old container's own configuration (env, labels,
//! command, entrypoint, healthcheck, user, workdir, exposed ports, volumes
//! and binds, restart policy, init, networks with their aliases...) on the
//! new image. What the old container merely inherited from its image is
//! left out, so the new image's defaults (its PATH, its CMD...) apply, as
//! `docker run` or compose would do with the new image.
//!
//! Left out on purpose, each said in a note: published ports with a fixed
//! host port (the old container holds them while both run), static IPs and
//! MAC addresses (same reason), and the container-id file.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, ImageConfig,
    NetworkingConfig,
};

use super::client::{Image, Inspected};

/// Everything needed to create one replacement ([`super::Client::create`]).
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// What was not copied, and why, for the operator.
    pub notes: Vec<String>,
    pub(super) body: ContainerCreateBody,
    /// Networks to connect after create (the API takes one at create time).
    pub(super) extra_networks: Vec<(String, EndpointSettings)>,
}

impl Plan {
    pub fn image(&self) -> &str {
        self.body.image.as_deref().unwrap_or_default()
    }
}

/// What a replacement is, apart from the old container.
pub struct Target<'a> {
    pub image: &'a str,
    pub name: String,
    /// Labels to set or override (rollout bookkeeping, compose numbering).
    pub labels: Vec<(String, String)>,
}

/// `old_image`: the image the old container runs, when it still exists;
/// without it everything is copied as the container has it.
pub fn plan(old: &Inspected, old_image: Option<&Image>, target: Target) -> Plan {
    let old = &old.raw;
    let mut notes = Vec::new();
    let id = old.id.clone().unwrap_or_default();
    let config = old.config.clone().unwrap_or_default();
    let image = old_image.map(|i| i.0.clone()).unwrap_or_default();
    if old_image.is_none() {
        notes.push(
            "its old image is gone, so env, command and labels are copied as they are, image defaults included".into(),
        );
    }
    let mut host = old.host_config.clone().unwrap_or_default();
    let network_mode = host.network_mode.clone().unwrap_or_default();

    let mut labels = own_labels(&config, &image);
    labels.extend(target.labels.iter().cloned());
    let entrypoint = differs(&config.entrypoint, &image.entrypoint);
    // Docker drops the image's CMD when the entrypoint is overridden, so an
    // explicit one must come along then.
    let cmd = if entrypoint.is_some() {
        config.cmd.clone()
    } else {
        differs(&config.cmd, &image.cmd)
    };
    let default_hostname = config.hostname.as_deref().is_none_or(|h| id.starts_with(h));
    let shares_uts = network_mode.starts_with("container:") || network_mode == "host";
    let body = ContainerCreateBody {
        image: Some(target.image.to_owned()),
        hostname: (!default_hostname && !shares_uts)
            .then(|| config.hostname.clone())
            .flatten(),
        domainname: config.domainname.clone().filter(|d| !d.is_empty()),
        user: differs(&config.user, &image.user),
        exposed_ports: minus(&config.exposed_ports, &image.exposed_ports),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env: minus(&config.env, &image.env),
        cmd,
        entrypoint,
        healthcheck: differs(&config.healthcheck, &image.healthcheck),
        volumes: minus(&config.volumes, &image.volumes),
        working_dir: differs(&config.working_dir, &image.working_dir),
        network_disabled: config.network_disabled,
        labels: Some(labels),
        stop_signal: differs(&config.stop_signal, &image.stop_signal),
        stop_timeout: config.stop_timeout,
        host_config: None,
        networking_config: None,
        ..Default::default()
    };

    drop_fixed_host_ports(&mut host, &mut notes);
    host.container_id_file = None;
    carry_anonymous_volumes(old, &mut host);
    let (primary, extra_networks) = networks(old, &network_mode, &id, &mut notes);
    Plan {
        name: target.name,
        notes,
        body: ContainerCreateBody {
            host_config: Some(host),
            networking_config: primary.map(|(name, endpoint)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(name, endpoint)])),
            }),
            ..body
        },
        extra_networks,
    }
}

/// The container's value when it is not just the image's.
fn differs<T: Clone + PartialEq>(container: &Option<T>, image: &Option<T>) -> Option<T> {
    match (container, image) {
        (Some(c), Some(i)) if c == i => None,
        (c, _) => c.clone(),
    }
}

/// The container's entries that the image does not have.
fn minus(container: &Option<Vec<String>>, image: &Option<Vec<String>>) -> Option<Vec<String>> {
    let inherited: HashSet<&String> = image.iter().flatten().collect();
    let own: Vec<String> = container
        .iter()
        .flatten()
        .filter(|e| !inherited.contains(e))
        .cloned()
        .collect();
    (!own.is_empty()).then_some(own)
}

fn own_labels(config: &ContainerConfig, image: &ImageConfig) -> HashMap<String, String> {
    let inherited = image.labels.clone().unwrap_or_default();
    config
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| inherited.get(k) != Some(v))
        .collect()
}

/// A published port with a fixed host port stays with the old container
/// (the new one could not bind it while both run); a random one is kept.
fn drop_fixed_host_ports(host: &mut HostConfig, notes: &mut Vec<String>) {
    let Some(bindings) = host.port_bindings.as_mut() else {
        return;
    };
    let mut kept = HashMap::new();
    let mut ports: Vec<_> = bindings.drain().collect();
    ports.sort_by(|a, b| a.0.cmp(&b.0));
    for (port, list) in ports {
        let list = list.unwrap_or_default();
        let (fixed, random): (Vec<_>, Vec<_>) = list
            .into_iter()
            .partition(|b| b.host_port.as_deref().is_some_and(|p| !p.is_empty() && p != "0"));
        for b in &fixed {
            let ip = b.host_ip.as_deref().filter(|ip| !ip.is_empty()).unwrap_or("0.0.0.0");
            notes.push(format!(
                "not published: {ip}:{}->{port} (the old container holds that host port while both run)",
                b.host_port.as_deref().unwrap_or_default()
            ));
        }
        if !random.is_empty() {
            kept.insert(port, Some(random));
        }
    }
    host.port_bindings = (!kept.is_empty()).then_some(kept);
}

/// Anonymous volumes (from the image's VOLUME or a bare `-v /path`) are
/// mounted into the replacement by name, as compose does on recreate, so
/// their data carries over.
fn carry_anonymous_volumes(old: &ContainerInspectResponse, host: &mut HostConfig) {
    let bound: HashSet<String> = host
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1).map(str::to_owned))
        .chain(host.mounts.iter().flatten().filter_map(|m| m.target.clone()))
        .collect();
    for mount in old.mounts.iter().flatten() {
        let (Some(name), Some(dest)) = (&mount.name, &mount.destination) else {
            continue;
        };
        if mount.typ.as_deref() == Some("volume") && !bound.contains(dest) {
            let mode = if mount.rw == Some(false) { ":ro" } else { "" };
            host.binds
                .get_or_insert_with(Vec::new)
                .push(format!("{name}:{dest}{mode}"));
        }
    }
}

type Endpoint = (String, EndpointSettings);

/// The network given at create time, and the others to connect after, each
/// with the old container's aliases (less its own id, which Docker adds).
fn networks(
    old: &ContainerInspectResponse,
    network_mode: &str,
    id: &str,
    notes: &mut Vec<String>,
) -> (Option<Endpoint>, Vec<Endpoint>) {
    if network_mode == "host" || network_mode == "none" || network_mode.starts_with("container:") {
        return (None, Vec::new());
    }
    let primary_name = match network_mode {
        "" | "default" => "bridge",
        name => name,
    };
    let mut attached: Vec<Endpoint> = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| {
            let settings = endpoint_settings(&name, &endpoint, id, notes);
            (name, settings)
        })
        .collect();
    attached.sort_by(|a, b| a.0.cmp(&b.0));
    let position = attached.iter().position(|(name, _)| name == primary_name);
    let primary = position.map(|i| attached.remove(i));
    (primary, attached)
}

fn endpoint_settings(network: &str, old: &EndpointSettings, id: &str, notes: &mut Vec<String>) -> EndpointSettings {
    let ipam = old.ipam_config.as_ref();
    let fixed_ip = ipam.is_some_and(|i| {
        i.ipv4_address.as_deref().is_some_and(|a| !a.is_empty())
            || i.ipv6_address.as_deref().is_some_and(|a| !a.is_empty())
    });
    if fixed_ip {
        notes.push(format!(
            "no static IP on {network}: the old container holds it while both run"
        ));
    }
    let aliases: Vec<String> = old
        .aliases
        .iter()
        .flatten()
        .filter(|a| !id.starts_with(a.as_str()))
        .cloned()
        .collect();
    EndpointSettings {
        aliases: (!aliases.is_empty()).then_some(aliases),
        links: old.links.clone(),
        driver_opts: old.driver_opts.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a Docker 20.10 inspect of a compose container.
    const OLD: &str = r#"{
        "Id": "4f9c2b7d1e3a4f9c2b7d1e3a4f9c2b7d1e3a4f9c2b7d1e3a4f9c2b7d1e3a4f9c",
        "Name": "/demo_website_1",
        "Image": "sha256:aaaa",
        "Config": {
            "Hostname": "4f9c2b7d1e3a", "Image": "app:1", "User": "",
            "Env": ["PATH=/usr/bin:/bin", "PORT=8080", "GREETING=hi"],
            "Cmd": ["httpd"], "WorkingDir": "/",
            "ExposedPorts": {"8080/tcp": {}, "9000/tcp": {}},
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000},
            "Labels": {"teal.service": "website", "image.vendor": "acme",
                       "com.docker.compose.project": "demo", "com.docker.compose.service": "website",
                       "com.docker.compose.container-number": "1", "com.docker.compose.config-hash": "abc"}
        },
        "HostConfig": {
            "NetworkMode": "demo_default", "Init": true,
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "Binds": ["/srv/data:/data:ro"],
            "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}],
                             "9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
        },
        "Mounts": [
            {"Type": "bind", "Source": "/srv/data", "Destination": "/data", "RW": false},
            {"Type": "volume", "Name": "0123abcd", "Destination": "/cache", "RW": true}
        ],
        "NetworkSettings": {"Networks": {
            "demo_default": {"Aliases": ["website", "4f9c2b7d1e3a"], "NetworkID": "n1", "IPAddress": "172.20.0.3"},
            "demo_back": {"Aliases": ["website", "4f9c2b7d1e3a"], "NetworkID": "n2",
                          "IPAMConfig": {"IPv4Address": "172.21.0.9"}}
        }}
    }"#;

    const IMAGE: &str = r#"{
        "Env": ["PATH=/usr/bin:/bin", "PORT=8080"], "Cmd": ["httpd"], "WorkingDir": "/",
        "ExposedPorts": {"8080/tcp": {}}, "Labels": {"image.vendor": "acme"}
    }"#;

    const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";

    fn planned(image: Option<&str>) -> Plan {
        let old = Inspected::new(serde_json::from_str(OLD).unwrap());
        let image: Option<Image> = image.map(|i| Image(serde_json::from_str(i).unwrap()));
        let target = Target {
            image: "app:2",
            name: "demo_website_2".into(),
            labels: vec![(COMPOSE_NUMBER.into(), "2".into())],
        };
        plan(&old, image.as_ref(), target)
    }

    #[test]
    fn copies_the_containers_own_config_onto_the_new_image() {
        let plan = planned(Some(IMAGE));
        let body = &plan.body;
        assert_eq!(body.image.as_deref(), Some("app:2"));
        assert_eq!(
            body.env,
            Some(vec!["GREETING=hi".to_string()]),
            "image env is the new image's"
        );
        assert_eq!(body.cmd, None, "the new image's CMD applies");
        assert_eq!(body.hostname, None, "the default hostname is the container id");
        assert_eq!(body.exposed_ports, Some(vec!["9000/tcp".to_string()]));
        assert!(body.healthcheck.is_some());
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels["teal.service"], "website");
        assert_eq!(labels[COMPOSE_NUMBER], "2");
        assert_eq!(labels["com.docker.compose.config-hash"], "abc");
        assert!(
            !labels.contains_key("image.vendor"),
            "image labels come from the new image"
        );
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.init, Some(true));
        assert_eq!(host.binds.as_ref().unwrap(), &["/srv/data:/data:ro", "0123abcd:/cache"]);
    }

    #[test]
    fn fixed_host_ports_and_static_ips_stay_with_the_old_container() {
        let plan = planned(Some(IMAGE));
        let ports = plan.body.host_config.as_ref().unwrap().port_bindings.as_ref().unwrap();
        assert!(!ports.contains_key("8080/tcp"));
        assert!(ports.contains_key("9000/tcp"), "a random host port does not clash");
        assert!(
            plan.notes.iter().any(|n| n.contains("127.0.0.1:8081->8080/tcp")),
            "{:?}",
            plan.notes
        );
        assert!(
            plan.notes.iter().any(|n| n.contains("static IP on demo_back")),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn networks_keep_their_aliases_without_the_old_id() {
        let plan = planned(Some(IMAGE));
        let endpoints = plan.body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints["demo_default"].aliases, Some(vec!["website".to_string()]));
        assert_eq!(plan.extra_networks.len(), 1);
        let (name, extra) = &plan.extra_networks[0];
        assert_eq!(name, "demo_back");
        assert_eq!(extra.aliases, Some(vec!["website".to_string()]));
        assert!(extra.ipam_config.is_none());
    }

    #[test]
    fn without_the_old_image_everything_is_copied() {
        let plan = planned(None);
        assert_eq!(plan.body.env.as_ref().unwrap().len(), 3);
        assert_eq!(plan.body.cmd, Some(vec!["httpd".to_string()]));
        assert!(!plan.notes.is_empty());
    }
}
