# %systemd_preun: on erase (not upgrade), disable and stop the service.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now http-golden-exporter.service >/dev/null 2>&1 || :
fi
