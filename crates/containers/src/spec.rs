//! A container's OCI runtime config (`config.json`) from its pod, its container spec and
//! its image, with Kubernetes' rules for the command, environment, user and resources.
//! Pure: no I/O but reading the image's `/etc/passwd` and `/etc/group` to resolve a user
//! name (the caller passes them in).

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use ronghe_images::ContainerImage;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The `PATH` a container gets when neither image nor spec sets one (containerd's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities a container gets unless its security context adds or drops some
/// (containerd's default set).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The CFS period a CPU limit is a quota of (kubelet's).
const CPU_PERIOD: i64 = 100_000;

/// Everything about one container instance that is not in its specs.
pub struct Placement<'a> {
    /// The mounted overlay root.
    pub rootfs: &'a Path,
    /// The pod's network namespace; `None` with `hostNetwork`.
    pub netns: Option<&'a Path>,
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` for the pod.
    pub hosts_file: &'a Path,
    pub hostname_file: &'a Path,
    pub resolv_file: &'a Path,
    /// runc's `cgroupsPath` (`/PARENT/podUID/ID`).
    pub cgroups_path: &'a str,
    pub pids_limit: i64,
    /// Whether the memory controller limits swap too (`memory.memsw.*` exists).
    pub limit_swap: bool,
    /// The image's `/etc/passwd` and `/etc/group`, for a user given by name.
    pub passwd: &'a str,
    pub group: &'a str,
}

/// The process a container runs (Kubernetes: `command` replaces the image's entrypoint and
/// drops its cmd; `args` replace the cmd), with `$(VAR)` references expanded.
pub fn process_args(
    container: &Container,
    image: &ContainerImage,
    env: &HashMap<String, String>,
) -> Result<Vec<String>> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let mut argv = if !command.is_empty() {
        command
    } else {
        image.config.entrypoint.clone()
    };
    if !args.is_empty() {
        argv.extend(args);
    } else if container.command.as_ref().is_none_or(Vec::is_empty) {
        argv.extend(image.config.cmd.iter().cloned());
    }
    if argv.is_empty() {
        return Err(Error::Config(format!(
            "no command specified for container {}",
            container.name
        )));
    }
    Ok(argv.iter().map(|arg| expand(arg, env)).collect())
}

/// The environment: the image's, then `HOSTNAME`, then the container's `env` (in order,
/// each value expanded against what came before). `valueFrom` is not supported yet.
pub fn environment(
    pod: &Pod,
    container: &Container,
    image: &ContainerImage,
) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| match env
        .iter_mut()
        .find(|(existing, _)| *existing == name)
    {
        Some(entry) => entry.1 = value,
        None => env.push((name, value)),
    };
    for entry in &image.config.env {
        let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(&mut env, name.to_owned(), value.to_owned());
    }
    if !env.iter().any(|(name, _)| name == "PATH") {
        set(&mut env, "PATH".into(), DEFAULT_PATH.into());
    }
    let hostname = pod.metadata.name.clone().unwrap_or_default();
    set(&mut env, "HOSTNAME".into(), hostname);
    for variable in container.env.iter().flatten() {
        if variable.value_from.is_some() {
            return Err(Error::Config(format!(
                "env {} of container {}: valueFrom is not supported yet",
                variable.name, container.name
            )));
        }
        let known: HashMap<String, String> = env.iter().cloned().collect();
        let value = expand(variable.value.as_deref().unwrap_or_default(), &known);
        set(&mut env, variable.name.clone(), value);
    }
    Ok(env)
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined one is
/// left as written, and `$$` is a literal `$`.
pub fn expand(text: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The user a container runs as: the security context's `runAsUser`/`runAsGroup`
/// (container first, then pod), else the image's `USER` (numeric or looked up in the
/// image's passwd and group files); root by default.
pub fn user(
    pod: &Pod,
    container: &Container,
    image: &ContainerImage,
    passwd: &str,
    group: &str,
) -> Result<(u32, u32)> {
    let pod_context = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.security_context.as_ref());
    let context = container.security_context.as_ref();
    let run_as_user = context
        .and_then(|c| c.run_as_user)
        .or_else(|| pod_context.and_then(|c| c.run_as_user));
    let run_as_group = context
        .and_then(|c| c.run_as_group)
        .or_else(|| pod_context.and_then(|c| c.run_as_group));
    let (mut uid, mut gid) = (0_u32, 0_u32);
    // A `runAsUser` replaces the image's user altogether.
    let image_user = image
        .config
        .user
        .as_deref()
        .filter(|u| !u.is_empty() && run_as_user.is_none());
    if let Some(spec) = image_user {
        let (user_part, group_part) = match spec.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (spec, None),
        };
        match user_part.parse::<u32>() {
            Ok(number) => {
                uid = number;
                gid = lookup(passwd, |fields| fields.get(2) == Some(&user_part), 3).unwrap_or(0);
            }
            Err(_) => {
                uid = lookup(passwd, |fields| fields.first() == Some(&user_part), 2).ok_or_else(
                    || {
                        Error::Config(format!(
                            "unable to find user {user_part}: no matching entries in passwd file"
                        ))
                    },
                )?;
                gid = lookup(passwd, |fields| fields.first() == Some(&user_part), 3).unwrap_or(0);
            }
        }
        if let Some(group_part) = group_part {
            gid = match group_part.parse::<u32>() {
                Ok(number) => number,
                Err(_) => lookup(group, |fields| fields.first() == Some(&group_part), 2)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "unable to find group {group_part}: no matching entries in group file"
                        ))
                    })?,
            };
        }
    }
    if let Some(run_as_user) = run_as_user {
        uid = u32::try_from(run_as_user)
            .map_err(|_| Error::Config(format!("runAsUser {run_as_user} is out of range")))?;
        if run_as_group.is_none() {
            gid = lookup(
                passwd,
                |fields| fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(uid),
                3,
            )
            .unwrap_or(0);
        }
    }
    if let Some(run_as_group) = run_as_group {
        gid = u32::try_from(run_as_group)
            .map_err(|_| Error::Config(format!("runAsGroup {run_as_group} is out of range")))?;
    }
    Ok((uid, gid))
}

/// Field `field` (a number) of the first line of a colon-separated file that matches.
fn lookup(file: &str, matches: impl Fn(&[&str]) -> bool, field: usize) -> Option<u32> {
    file.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| matches(fields))
        .and_then(|fields| fields.get(field).and_then(|f| f.parse().ok()))
}

/// The container's cgroup limits (`linux.resources`): `limits.memory` as the memory
/// limit, `limits.cpu` as a CFS quota, `requests.cpu` (or the limit) as CPU shares, and
/// the pids limit; devices are denied but for runc's defaults.
pub fn resources(container: &Container, pids_limit: i64, limit_swap: bool) -> Result<Value> {
    let quantity = |map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
                    name: &str|
     -> Result<Option<i64>> {
        map.and_then(|m| m.get(name))
            .map(|q| {
                ronghe_api_types::quantity::parse(&q.0)
                    .map_err(|error| Error::Config(format!("{name} {:?}: {error}", q.0)))
            })
            .transpose()
    };
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "pids": {"limit": pids_limit},
    });
    if let Some(memory) = quantity(limits, "memory")? {
        // Thousandths of a byte, rounded up to a whole byte.
        let bytes = (memory + 999) / 1000;
        resources["memory"] = json!({"limit": bytes});
        if limit_swap {
            resources["memory"]["swap"] = json!(bytes);
        }
    }
    let cpu_limit = quantity(limits, "cpu")?;
    let cpu_request = quantity(requests, "cpu")?.or(cpu_limit);
    // Kubernetes' conversions: 1 CPU is 1024 shares (at least 2), a limit is a quota of
    // the period (at least 1 ms).
    let shares = cpu_request.map_or(2, |milli| (milli * 1024 / 1000).max(2));
    let mut cpu = json!({"shares": shares});
    if let Some(milli) = cpu_limit {
        cpu["quota"] = json!((milli * CPU_PERIOD / 1000).max(1000));
        cpu["period"] = json!(CPU_PERIOD);
    }
    resources["cpu"] = cpu;
    Ok(resources)
}

/// The capabilities after the security context's `add` and `drop` (`ALL` drops all).
fn capabilities(container: &Container) -> Vec<String> {
    let wanted = container
        .security_context
        .as_ref()
        .and_then(|c| c.capabilities.as_ref());
    let name = |cap: &String| {
        let upper = cap.to_ascii_uppercase();
        if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    let drop: Vec<String> = wanted
        .and_then(|w| w.drop.as_ref())
        .into_iter()
        .flatten()
        .map(name)
        .collect();
    let mut caps: Vec<String> = if drop.iter().any(|d| d == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for add in wanted
        .and_then(|w| w.add.as_ref())
        .into_iter()
        .flatten()
        .map(name)
    {
        if !caps.contains(&add) {
            caps.push(add);
        }
    }
    caps
}

/// The whole `config.json` of one container instance.
pub fn config(
    pod: &Pod,
    container: &Container,
    image: &ContainerImage,
    placement: &Placement<'_>,
) -> Result<Value> {
    let context = container.security_context.as_ref();
    if context.and_then(|c| c.privileged) == Some(true) {
        return Err(Error::Config(format!(
            "container {}: privileged containers are not supported yet",
            container.name
        )));
    }
    let env = environment(pod, container, image)?;
    let env_map: HashMap<String, String> = env.iter().cloned().collect();
    let args = process_args(container, image, &env_map)?;
    let (uid, gid) = user(pod, container, image, placement.passwd, placement.group)?;
    let cwd = container
        .working_dir
        .clone()
        .or_else(|| image.config.working_dir.clone())
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Config(format!(
            "workingDir {cwd:?} is not an absolute path"
        )));
    }
    let caps = capabilities(container);
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "mount"}),
    ];
    if !host_network {
        namespaces.push(json!({"type": "uts"}));
    }
    if let Some(netns) = placement.netns {
        namespaces.push(json!({"type": "network", "path": netns}));
    }
    let bind = |destination: &str, source: &Path| {
        json!({"destination": destination, "type": "bind", "source": source,
               "options": ["rbind", "rprivate", "rw"]})
    };
    let mut process = json!({
        "terminal": false,
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": env.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>(),
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": context.and_then(|c| c.allow_privilege_escalation) == Some(false),
    });
    if let Some(group) = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.supplemental_groups.clone())
    {
        process["user"]["additionalGids"] = json!(group);
    }
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {
            "path": placement.rootfs,
            "readonly": context.and_then(|c| c.read_only_root_filesystem) == Some(true),
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            bind("/etc/hosts", placement.hosts_file),
            bind("/etc/hostname", placement.hostname_file),
            bind("/etc/resolv.conf", placement.resolv_file),
        ],
        "linux": {
            "cgroupsPath": placement.cgroups_path,
            "resources": resources(container, placement.pids_limit, placement.limit_swap)?,
            "namespaces": namespaces,
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    if !host_network {
        config["hostname"] = json!(pod.metadata.name.clone().unwrap_or_default());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ronghe_images::ImageConfig;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ContainerImage {
        ContainerImage {
            digest: "sha256:abc".into(),
            layers: vec![],
            config: ImageConfig {
                entrypoint: entrypoint.iter().map(|s| (*s).to_owned()).collect(),
                cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
                env: vec!["PATH=/bin".into(), "A=image".into()],
                working_dir: None,
                user: None,
            },
        }
    }

    fn container(value: Value) -> Container {
        serde_json::from_value(value).expect("a container")
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": []}}))
            .expect("a pod")
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let image = image(&["/entry"], &["default"]);
        let env = HashMap::from([("X".to_owned(), "x".to_owned())]);
        let args = |value| process_args(&container(value), &image, &env).expect("args");
        assert_eq!(args(json!({"name": "c"})), ["/entry", "default"]);
        assert_eq!(args(json!({"name": "c", "args": ["a"]})), ["/entry", "a"]);
        assert_eq!(args(json!({"name": "c", "command": ["sh"]})), ["sh"]);
        assert_eq!(
            args(json!({"name": "c", "command": ["sh"], "args": ["-c", "$(X) $(Y) $$(X)"]})),
            ["sh", "-c", "x $(Y) $(X)"]
        );
        let empty = ContainerImage::default();
        assert!(process_args(&container(json!({"name": "c"})), &empty, &env).is_err());
    }

    #[test]
    fn the_environment_layers_image_then_container() {
        let env = environment(
            &pod(),
            &container(json!({"name": "c", "env": [
                {"name": "A", "value": "spec"}, {"name": "B", "value": "$(A)-b"}]})),
            &image(&[], &["sh"]),
        )
        .expect("env");
        let map: HashMap<_, _> = env.into_iter().collect();
        assert_eq!(map["A"], "spec");
        assert_eq!(map["B"], "spec-b");
        assert_eq!(map["PATH"], "/bin");
        assert_eq!(map["HOSTNAME"], "web");
    }

    #[test]
    fn users_resolve_from_ids_names_and_security_contexts() {
        let passwd = "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n";
        let group = "root:x:0:\nstaff:x:50:\n";
        let mut image = image(&[], &["sh"]);
        let plain = container(json!({"name": "c"}));
        assert_eq!(
            user(&pod(), &plain, &image, passwd, group).expect("user"),
            (0, 0)
        );
        image.config.user = Some("www".into());
        assert_eq!(
            user(&pod(), &plain, &image, passwd, group).expect("user"),
            (33, 34)
        );
        image.config.user = Some("1000:staff".into());
        assert_eq!(
            user(&pod(), &plain, &image, passwd, group).expect("user"),
            (1000, 50)
        );
        image.config.user = Some("nobody".into());
        assert!(user(&pod(), &plain, &image, passwd, group).is_err());
        let pinned = container(json!({"name": "c", "securityContext": {"runAsUser": 33}}));
        assert_eq!(
            user(&pod(), &pinned, &image, passwd, group).expect("user"),
            (33, 34)
        );
    }

    #[test]
    fn limits_and_requests_become_cgroup_settings() {
        let c = container(json!({"name": "c", "resources": {
            "limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}}}));
        let limited = resources(&c, 1024, true).expect("resources");
        assert_eq!(limited["memory"]["limit"], 64 * 1024 * 1024);
        assert_eq!(limited["memory"]["swap"], 64 * 1024 * 1024);
        assert_eq!(limited["cpu"]["quota"], 50_000);
        assert_eq!(limited["cpu"]["period"], 100_000);
        assert_eq!(limited["cpu"]["shares"], 256);
        assert_eq!(limited["pids"]["limit"], 1024);
        let best_effort =
            resources(&container(json!({"name": "c"})), 10, false).expect("resources");
        assert_eq!(best_effort["cpu"]["shares"], 2);
        assert!(best_effort.get("memory").is_none());
    }

    #[test]
    fn capabilities_follow_add_and_drop() {
        let c = container(
            json!({"name": "c", "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}}),
        );
        assert_eq!(capabilities(&c), ["CAP_NET_ADMIN"]);
        let c = container(
            json!({"name": "c", "securityContext": {"capabilities": {"drop": ["KILL"]}}}),
        );
        assert!(!capabilities(&c).contains(&"CAP_KILL".to_owned()));
        assert!(capabilities(&c).contains(&"CAP_CHOWN".to_owned()));
    }
}
