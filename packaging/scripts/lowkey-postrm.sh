#!/bin/sh
# Removing or purging lowkey keeps the box's data: its identity (paired
# computers know it), its store and its backups are in /var/lib/lowkey,
# and the agents' home in /var/lib/lowkey-agent, until you delete them.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
	echo "lowkey: the box's data is kept in /var/lib/lowkey (and the agents' home in /var/lib/lowkey-agent); delete them yourself if you mean to" >&2
fi
exit 0
