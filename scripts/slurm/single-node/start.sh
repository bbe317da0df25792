#!/bin/bash
# Starts a single-node Slurm on this machine as root, by hand (no systemd): munged, slurmctld and
# slurmd with scripts/slurm/single-node/slurm.conf. Installs Debian's packages first when
# sbatch is missing (apt-get install slurm-wlm munge). Idempotent: daemons already running are
# left alone. Prints the node's state when it is ready.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "start.sh: run as root" >&2; exit 2; }
if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge
fi
# munge: the package created /etc/munge/munge.key; munged runs as user munge.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
# slurm.conf for this host.
host=$(hostname -s)
node=$(slurmd -C | head -1)
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
sed -e "s|@HOST@|$host|" -e "s|@NODE@|$node State=UNKNOWN|" "$here/slurm.conf" > /etc/slurm/slurm.conf
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 1 30); do
  if sinfo -h -o '%T' 2>/dev/null | grep -q idle; then sinfo; exit 0; fi
  sleep 1
done
echo "start.sh: the node did not become idle; see /var/log/slurm/" >&2
sinfo || true
exit 1
