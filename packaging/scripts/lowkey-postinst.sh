#!/bin/sh
# lowkey: the accounts, the box's directories, the service.
set -e
if [ "$1" = configure ] || [ "$1" = "" ]; then
	if ! getent group lowkey >/dev/null; then
		addgroup --system --quiet lowkey
	fi
	if ! getent passwd lowkey >/dev/null; then
		adduser --system --quiet --ingroup lowkey --home /var/lib/lowkey --no-create-home \
			--shell /usr/sbin/nologin --gecos "Lowkey hub" lowkey
	fi
	if ! getent passwd lowkey-agent >/dev/null; then
		adduser --system --quiet --group --home /var/lib/lowkey-agent \
			--shell /usr/sbin/nologin --gecos "Lowkey agents" lowkey-agent
	fi
	# The hub's data: its own, 0700 (an upgrade leaves what is in it).
	install -d -o lowkey -g lowkey -m 0700 /var/lib/lowkey
	# The sessions' working directories: the hub's, passable by the agents.
	install -d -o lowkey -g lowkey -m 0711 /var/lib/lowkey-work
	install -d -o lowkey-agent -g lowkey-agent -m 0700 /var/lib/lowkey-agent
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
	if [ -z "$2" ]; then
		# A first install: start it (on loopback, see /etc/default/lowkey).
		systemctl enable --now lowkey.service >/dev/null || true
	else
		# An upgrade: the same data, the new program.
		systemctl try-restart lowkey.service >/dev/null || true
	fi
fi
exit 0
