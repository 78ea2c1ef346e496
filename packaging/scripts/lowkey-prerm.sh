#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl disable --now lowkey.service >/dev/null || true
fi
exit 0
