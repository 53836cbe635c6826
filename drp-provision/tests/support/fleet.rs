//! Several real sshd "hosts" that one client key logs in to, with one known_hosts file
//! listing all of their host keys (as a spare pool or an Ansible inventory needs).
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drp_provision::{HostSpec, SshOptions, SshTransport, Transport};

use super::sshd::{self, Sshd};

/// `n` sshd servers on loopback sharing a client key and a known_hosts file.
#[derive(Debug)]
pub struct Fleet {
    /// The servers; `None` once stopped with [`Fleet::stop`].
    pub servers: Vec<Option<Sshd>>,
    ports: Vec<u16>,
    dir: tempfile::TempDir,
}

impl Fleet {
    pub fn start(n: usize) -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("drp-fleet-")
            .tempdir()
            .unwrap();
        sshd::keygen(&dir.path().join("id"), "");
        let servers: Vec<Sshd> = (0..n).map(|_| Sshd::start()).collect();
        let mut known_hosts = String::new();
        for s in &servers {
            s.authorize(&dir.path().join("id.pub"));
            known_hosts.push_str(&fs::read_to_string(s.known_hosts()).unwrap());
        }
        fs::write(dir.path().join("known_hosts"), known_hosts).unwrap();
        Fleet {
            ports: servers.iter().map(Sshd::port).collect(),
            servers: servers.into_iter().map(Some).collect(),
            dir,
        }
    }

    /// The client key that every server accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    /// A known_hosts file listing every server.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `USER@127.0.0.1:PORT` of server `i` (also after it was stopped).
    pub fn target(&self, i: usize) -> String {
        let user = sshd::current_user();
        format!("{user}@127.0.0.1:{}", self.ports[i])
    }

    /// Stops server `i` (its port then refuses connections).
    pub fn stop(&mut self, i: usize) {
        self.servers[i] = None;
    }

    /// A transport factory for a spare pool: strict host-key checking against
    /// [`Fleet::known_hosts`], authentication with [`Fleet::client_key`].
    pub fn transport_factory(
        &self,
    ) -> impl Fn(&HostSpec) -> Arc<dyn Transport> + Send + Sync + 'static {
        let key = self.client_key();
        let known_hosts = self.known_hosts();
        move |host: &HostSpec| {
            Arc::new(SshTransport::new(
                SshOptions::from_target(&host.address)
                    .with_identity_file(&key)
                    .with_known_hosts(&known_hosts)
                    .with_connect_timeout(Duration::from_secs(5)),
            )) as Arc<dyn Transport>
        }
    }
}
