//! [`Prepared`]: a [`Provisioner`] wrapper that prepares each acquired host with Ansible.

use async_trait::async_trait;

use crate::ansible::AnsibleRunner;
use crate::provisioner::{HostRequest, Lease, ProvisionError, Provisioner};

/// Wraps a provisioner: every host it acquires is prepared by running a playbook on it
/// (an [`AnsibleRunner`]) before it is handed out. If the playbook fails, the host is
/// released again and `acquire` fails with [`ProvisionError::Prepare`], naming the host,
/// the failed task and its message.
#[derive(Debug)]
pub struct Prepared<P> {
    inner: P,
    runner: AnsibleRunner,
}

impl<P: Provisioner> Prepared<P> {
    /// Prepares the hosts of `inner` with `runner`.
    pub fn new(inner: P, runner: AnsibleRunner) -> Self {
        Prepared { inner, runner }
    }

    /// The wrapped provisioner.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

#[async_trait]
impl<P: Provisioner> Provisioner for Prepared<P> {
    async fn acquire(&self, request: &HostRequest) -> Result<Lease, ProvisionError> {
        let lease = self.inner.acquire(request).await?;
        if let Err(e) = self.runner.run(std::slice::from_ref(&lease.host)).await {
            if let Err(release) = self.inner.release(&lease).await {
                tracing::error!(host = %lease.host.name, error = %release,
                    "releasing a host that could not be prepared failed");
            }
            return Err(ProvisionError::Prepare {
                host: lease.host.name.clone(),
                source: Box::new(e),
            });
        }
        Ok(lease)
    }

    async fn release(&self, lease: &Lease) -> Result<(), ProvisionError> {
        self.inner.release(lease).await
    }
}
