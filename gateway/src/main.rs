#![forbid(unsafe_code)]
//! The `portcullis` command line.

use clap::{Parser, Subcommand};
use portcullis::config::{self, env::ProcessEnv};
use std::process::ExitCode;

/// mimalloc: a proxy allocates and frees many small buffers per request; it measured about
/// 2-3 us per request cheaper than glibc malloc under pingora here (deploy/bench).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Identity-aware access gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (without --config: the embedded quick-start config and demo upstream).
    Run {
        /// Config file (YAML).
        #[arg(long, short)]
        config: Option<String>,
        /// Take over the listening sockets of a running instance (zero-downtime upgrade).
        #[arg(long, short)]
        upgrade: bool,
        /// Detach into the background.
        #[arg(long, short)]
        daemon: bool,
    },
    /// Validate a config file: exit 0 if valid, otherwise print every problem and exit 1.
    Check {
        /// Config file (YAML).
        #[arg(long, short)]
        config: String,
        /// Do not resolve upstream host names (validate a config meant for another network,
        /// such as Kubernetes Service names rendered by the Helm chart).
        #[arg(long)]
        no_resolve: bool,
    },
    /// Test and explain policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Run a demo upstream that answers with the request it received as JSON.
    Whoami {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// Name reported in answers (default: the listen address).
        #[arg(long)]
        name: Option<String>,
        /// Serve TLS with this PEM certificate (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<String>,
        /// PEM key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<String>,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// The directory of users and groups.
    Directory {
        #[command(subcommand)]
        command: DirectoryCommand,
    },
    /// Print the Argon2id hash of a password read from stdin (one line), for
    /// `directory.users_file`. The password never appears in arguments or the process list.
    HashPassword,
    /// Read Kubernetes manifests on stdin and write them with Portcullis added as a native
    /// sidecar in front of the app's port (like `linkerd inject`); idempotent.
    Inject {
        /// Sidecar image.
        #[arg(long, default_value = concat!("portcullis:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// ConfigMap with the Portcullis `config.yaml` (mounted at /etc/portcullis/config).
        #[arg(long, default_value = "portcullis")]
        config_map: String,
        /// Port the gateway listens on (its `server.http.listen`).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Admin port (probes, metrics; its `server.admin.listen`).
        #[arg(long, default_value_t = 9090)]
        admin_port: u16,
        /// The app port to guard (number or name), when the app declares several.
        #[arg(long)]
        app_port: Option<String>,
        /// The app container, when the pod has several.
        #[arg(long)]
        container: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain and check every signed checkpoint: exit 0 if intact, 1 if
    /// tampering is found (each finding is printed), 2 if the log could not be read.
    Verify {
        /// Config file (its `store:` is checked).
        #[arg(long, short)]
        config: Option<String>,
        /// Store URL instead of the config's (sqlite://PATH or postgres://...).
        #[arg(long)]
        store: Option<String>,
        /// Trusted public keys (JSON as served at the admin /audit/keys); default: the store's own.
        #[arg(long)]
        keys: Option<String>,
        /// A checkpoint (or an earlier --json report) that must still be present.
        #[arg(long)]
        expect: Option<String>,
        /// Print the full report as JSON (the evidence to keep).
        #[arg(long)]
        json: bool,
    },
    /// Write records between --from and --to (record numbers or RFC 3339 times, inclusive)
    /// plus the checkpoints that cover them, as JSON.
    Export {
        /// Config file.
        #[arg(long, short)]
        config: Option<String>,
        /// Store URL instead of the config's.
        #[arg(long)]
        store: Option<String>,
        /// First record number or time.
        #[arg(long)]
        from: Option<String>,
        /// Last record number or time.
        #[arg(long)]
        to: Option<String>,
        /// Output file (default stdout).
        #[arg(long, short)]
        out: Option<String>,
    },
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Run each directory.sync connector once: read the upstream directory and apply the
    /// changes (exit 0 if every connector ran completely, 1 if not, 2 on a config or store
    /// problem).
    Sync {
        /// Config file.
        #[arg(long, short)]
        config: String,
        /// Print the changes (create/update/deactivate, group changes) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Only the connector with this id.
        #[arg(long)]
        connector: Option<String>,
        /// Apply deactivations over the connector's deletion_threshold (this run only).
        #[arg(long)]
        allow_deletions: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run table-driven cases (input -> expected decision); exit 1 if any fails.
    Test {
        /// Test file (YAML).
        file: String,
        /// Gateway config whose routes the cases name (when the file has no routes).
        #[arg(long, short)]
        config: Option<String>,
    },
    /// Print the decision for one input and why.
    Explain {
        /// Gateway config.
        #[arg(long, short)]
        config: String,
        /// Engine input as JSON (identity, request, network, device, now).
        #[arg(long, short)]
        input: String,
        /// Route id (default: the route the input's host and path match).
        #[arg(long)]
        route: Option<String>,
    },
}

fn policy(cmd: PolicyCommand) -> ExitCode {
    let result = match cmd {
        PolicyCommand::Test { file, config } => {
            portcullis::policy_cli::test(&file, config.as_deref()).map(|(report, ok)| {
                println!("{report}");
                ok
            })
        }
        PolicyCommand::Explain {
            config,
            input,
            route,
        } => portcullis::policy_cli::explain(&config, &input, route.as_deref()).map(|out| {
            println!("{out}");
            true
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            upgrade,
            daemon,
        } => match portcullis::server::run(portcullis::server::RunOptions {
            config,
            upgrade,
            daemon,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("portcullis: cannot start:\n{e}");
                ExitCode::from(2)
            }
        },
        Command::Check { config, no_resolve } => match if no_resolve {
            config::without_resolving(|| config::load_file(&config, &ProcessEnv))
        } else {
            config::load_file(&config, &ProcessEnv)
        } {
            Ok((cfg, _)) => {
                println!("{config}: OK ({} routes)", cfg.routes.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{} problem(s) found", e.errors.len());
                ExitCode::FAILURE
            }
        },
        Command::Audit { action } => match action {
            AuditCommand::Verify {
                config,
                store,
                keys,
                expect,
                json,
            } => portcullis::audit::cli::verify_cmd(
                &portcullis::audit::cli::Source { config, store },
                keys.as_deref(),
                expect.as_deref(),
                json,
            ),
            AuditCommand::Export {
                config,
                store,
                from,
                to,
                out,
            } => portcullis::audit::cli::export_cmd(
                &portcullis::audit::cli::Source { config, store },
                from.as_deref(),
                to.as_deref(),
                out.as_deref(),
            ),
        },
        Command::Policy { command } => policy(command),
        Command::HashPassword => hash_password(),
        Command::Inject {
            image,
            config_map,
            port,
            admin_port,
            app_port,
            container,
        } => inject(portcullis::inject::Options {
            image,
            config_map,
            port,
            admin_port,
            app_port,
            container,
        }),
        Command::Directory {
            command:
                DirectoryCommand::Sync {
                    config,
                    dry_run,
                    json,
                    connector,
                    allow_deletions,
                },
        } => ExitCode::from(portcullis::directory::sync::cli::run(
            &portcullis::directory::sync::cli::Options {
                config,
                dry_run,
                json,
                connector,
                allow_deletions,
            },
        )),
        Command::Whoami {
            listen,
            name,
            tls_cert,
            tls_key,
        } => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            portcullis::logging::init(portcullis::config::model::LogFormat::Text, "info");
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("whoami: cannot start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let tls = tls_cert.zip(tls_key);
            match rt.block_on(portcullis::whoami::serve(
                portcullis::whoami::WhoamiOptions { listen, name, tls },
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("whoami: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `portcullis hash-password`: reads one line from stdin, prints its Argon2id PHC string.
fn inject(opts: portcullis::inject::Options) -> ExitCode {
    use std::io::Read;
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read manifests from stdin: {e}");
        return ExitCode::from(2);
    }
    match portcullis::inject::inject(&input, &opts) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis inject: {e}");
            ExitCode::from(1)
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("cannot read the password from stdin");
        return ExitCode::from(2);
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.len() < portcullis::password::MIN_PASSWORD {
        eprintln!(
            "a password needs at least {} characters",
            portcullis::password::MIN_PASSWORD
        );
        return ExitCode::from(1);
    }
    match portcullis::password::hash(password) {
        Some(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "the password is longer than {} bytes",
                portcullis::password::MAX_PASSWORD
            );
            ExitCode::from(1)
        }
    }
}
