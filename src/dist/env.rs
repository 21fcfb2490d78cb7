//! Where a process stands in a distributed run: torchrun's variables, or Slurm's as a fallback.
use crate::error::{Error, Result};

/// Which launcher's variables were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvSource {
    Torchrun,
    Slurm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    pub source: EnvSource,
}

/// torchrun's default port, used when neither MASTER_PORT nor a Slurm job id gives one.
const DEFAULT_PORT: u16 = 29500;

impl DistEnv {
    /// From the process environment.
    pub fn from_env() -> Result<DistEnv> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<DistEnv> {
        let number = |key: &str| -> Result<Option<usize>> {
            match get(key) {
                None => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    Error::Distributed(format!(
                        "{key}='{v}' is not a non-negative whole number; fix the launcher's {key}"
                    ))
                }),
            }
        };
        let (rank, world, local, source) = match (number("RANK")?, number("WORLD_SIZE")?) {
            (Some(r), Some(w)) => (r, w, number("LOCAL_RANK")?.unwrap_or(0), EnvSource::Torchrun),
            (None, None) => {
                match (number("SLURM_PROCID")?, number("SLURM_NTASKS")?) {
                    (Some(r), Some(w)) => (r, w, number("SLURM_LOCALID")?.unwrap_or(0), EnvSource::Slurm),
                    _ => return Err(Error::Distributed(
                        "⟨distributed⟩ needs RANK and WORLD_SIZE (set by torchrun) or SLURM_PROCID and SLURM_NTASKS \
                         (set by srun); start each process under `torchrun --nproc-per-node N --no-python` or `srun`, \
                         with ⟨distributed⟩"
                            .into(),
                    )),
                }
            }
            (Some(_), None) => return Err(Error::Distributed("RANK is set but WORLD_SIZE is not; set both".into())),
            (None, Some(_)) => return Err(Error::Distributed("WORLD_SIZE is set but RANK is not; set both".into())),
        };
        if world == 0 {
            return Err(Error::Distributed("WORLD_SIZE=0: a group needs at least one process".into()));
        }
        if rank >= world {
            return Err(Error::Distributed(format!(
                "RANK={rank} is not below WORLD_SIZE={world}: ranks run 0..{}; check the launcher's variables",
                world - 1
            )));
        }
        let master_addr = match (get("MASTER_ADDR"), source) {
            (Some(a), _) if !a.trim().is_empty() => a.trim().to_string(),
            (_, EnvSource::Slurm) => get("SLURM_JOB_NODELIST")
                .or_else(|| get("SLURM_NODELIST"))
                .and_then(|l| first_host(&l))
                .ok_or_else(|| {
                    Error::Distributed(
                        "MASTER_ADDR is not set and SLURM_JOB_NODELIST names no host; export MASTER_ADDR".into(),
                    )
                })?,
            _ if world == 1 => "127.0.0.1".to_string(),
            _ => {
                return Err(Error::Distributed(
                    "MASTER_ADDR is not set: give the address of rank 0's machine (torchrun sets it)".into(),
                ))
            }
        };
        let master_port = match get("MASTER_PORT") {
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::Distributed(format!("MASTER_PORT='{p}' is not a port (1-65535)")))?,
            // As Lightning does under Slurm: a port from the job id, so two jobs on a node do not collide.
            None => match get("SLURM_JOB_ID").and_then(|j| j.trim().parse::<u64>().ok()) {
                Some(job) if source == EnvSource::Slurm => 15000 + (job % 20000) as u16,
                _ => DEFAULT_PORT,
            },
        };
        Ok(DistEnv { rank, world_size: world, local_rank: local, master_addr, master_port, source })
    }
}

/// The first host of a Slurm node list: `node[03-05,7],gpu1` → `node03`, `a,b` → `a`.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    if list.is_empty() {
        return None;
    }
    let mut depth = 0;
    let mut end = list.len();
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let first = &list[..end];
    match first.find('[') {
        None => Some(first.to_string()),
        Some(open) => {
            let inner = first[open + 1..].trim_end_matches(']');
            let range = inner.split(',').next()?;
            let start = range.split('-').next()?;
            Some(format!("{}{}", &first[..open], start))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<DistEnv> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DistEnv::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn torchrun_variables() {
        let e = env(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.2"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank, e.master_port), (1, 4, 1, 1234));
        assert_eq!(e.master_addr, "10.0.0.2");
        assert_eq!(e.source, EnvSource::Torchrun);
    }

    #[test]
    fn slurm_fallback() {
        let e = env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
            ("SLURM_JOB_ID", "123456"),
        ])
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank), (5, 8, 1));
        assert_eq!(e.master_addr, "gpu07");
        assert_eq!(e.master_port, 15000 + (123456 % 20000) as u16);
        assert_eq!(e.source, EnvSource::Slurm);
        // torchrun's variables win over Slurm's (torchrun inside an allocation).
        let e = env(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "4"),
        ])
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.source), (0, 2, EnvSource::Torchrun));
    }

    #[test]
    fn node_lists() {
        assert_eq!(first_host("node[03-05,7],gpu1").as_deref(), Some("node03"));
        assert_eq!(first_host("a,b").as_deref(), Some("a"));
        assert_eq!(first_host("single").as_deref(), Some("single"));
        assert_eq!(first_host(""), None);
    }

    #[test]
    fn bad_variables_are_one_line_errors() {
        let msg = |pairs: &[(&str, &str)]| env(pairs).unwrap_err().to_string();
        assert!(msg(&[]).contains("torchrun"));
        assert!(msg(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")]).contains("not below WORLD_SIZE=2"));
        assert!(msg(&[("RANK", "x"), ("WORLD_SIZE", "2")]).contains("RANK='x'"));
        assert!(msg(&[("RANK", "0"), ("WORLD_SIZE", "2")]).contains("MASTER_ADDR is not set"));
        assert!(msg(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")])
            .contains("MASTER_PORT"));
        assert!(msg(&[("WORLD_SIZE", "2")]).contains("RANK is not"));
        for m in [msg(&[]), msg(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")])] {
            assert!(!m.contains('\n'), "{m}");
        }
    }
}
