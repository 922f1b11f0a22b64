//! `portcullis audit verify|export`.

use super::chain::{Checkpoint, PublicKey};
use super::store;
use super::verify::{self, Bound};
use crate::config::{self, env::ProcessEnv, problems::Problems};
use crate::store::StoreUrl;
use std::process::ExitCode;

/// Where to find the store: `--store URL` or the config file's `store:`.
#[derive(Debug, Clone)]
pub struct Source {
    /// Config file.
    pub config: Option<String>,
    /// Store URL, overriding the config.
    pub store: Option<String>,
}

fn store_url(src: &Source) -> Result<StoreUrl, String> {
    if let Some(s) = &src.store {
        let mut p = Problems::default();
        return StoreUrl::build(Some(s), std::path::Path::new("."), &mut p).ok_or_else(|| {
            p.0.iter()
                .map(|x| x.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        });
    }
    let Some(path) = &src.config else {
        return Err("give --config FILE or --store URL".into());
    };
    config::load_file(path, &ProcessEnv)
        .map(|(c, _)| c.store)
        .map_err(|e| e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &str) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

/// `audit verify`: exit 0 when the log is intact, 1 when tampering is found, 2 when it could
/// not be checked.
pub fn verify_cmd(src: &Source, keys: Option<&str>, expect: Option<&str>, json: bool) -> ExitCode {
    let run = || -> Result<verify::Report, String> {
        let url = store_url(src)?;
        let pinned = match keys {
            Some(f) => {
                #[derive(serde::Deserialize)]
                struct Keys {
                    keys: Vec<PublicKey>,
                }
                Some(read_json::<Keys>(f)?.keys)
            }
            None => None,
        };
        let expect = match expect {
            Some(f) => {
                // Either a checkpoint or an earlier `verify --json` report.
                let v: serde_json::Value = read_json(f)?;
                let cp = v.get("last_checkpoint").cloned().unwrap_or(v);
                Some(serde_json::from_value::<Checkpoint>(cp).map_err(|e| format!("{f}: {e}"))?)
            }
            None => None,
        };
        runtime()?.block_on(async {
            let s = store::open_existing(&url)
                .await
                .map_err(|e| e.to_string())?;
            verify::verify(s.as_ref(), pinned, expect.as_ref())
                .await
                .map_err(|e| e.to_string())
        })
    };
    match run() {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                for p in &report.problems {
                    println!("TAMPERED ({:?}): {}", p.kind, p.message);
                }
                println!(
                    "{} records, {} checkpoints ({} verified, keys from {}), head {}: {}",
                    report.records,
                    report.checkpoints,
                    report.checkpoints_verified,
                    report.keys_source,
                    report.head_hash,
                    if report.ok { "OK" } else { "FAILED" }
                );
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("audit verify: {e}");
            ExitCode::from(2)
        }
    }
}

/// `audit export`: records between `from` and `to` with their covering checkpoints, as JSON.
pub fn export_cmd(
    src: &Source,
    from: Option<&str>,
    to: Option<&str>,
    out: Option<&str>,
) -> ExitCode {
    let run = || -> Result<(), String> {
        let from: Option<Bound> = from.map(str::parse).transpose()?;
        let to: Option<Bound> = to.map(str::parse).transpose()?;
        let url = store_url(src)?;
        let export = runtime()?.block_on(async {
            let s = store::open_existing(&url)
                .await
                .map_err(|e| e.to_string())?;
            verify::export(s.as_ref(), from.as_ref(), to.as_ref())
                .await
                .map_err(|e| e.to_string())
        })?;
        let text = serde_json::to_string_pretty(&export).map_err(|e| e.to_string())?;
        match out {
            Some(path) => std::fs::write(path, text + "\n").map_err(|e| format!("{path}: {e}")),
            None => {
                println!("{text}");
                Ok(())
            }
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("audit export: {e}");
            ExitCode::from(2)
        }
    }
}
