# The exporter on the guest's kernel (sourced by init.sh): two namespaces
# joined by a veth pair, a busybox httpd in each place requests go to, the
# exporter watching both ends and lo (/etc/http-golden-exporter.toml, written
# by the test), 5 requests over the veth pair and 5 over lo, then SIGTERM.
# The test on the host asserts on what the sections hold.

network() {
    mkdir -p /www && echo hello > /www/index.html &&
    ip netns add server && ip netns add client &&
    ip link add hgs type veth peer name hgc &&
    ip link set hgs netns server && ip link set hgc netns client &&
    ip -n server addr add 198.18.0.1/24 dev hgs && ip -n server link set hgs up && ip -n server link set lo up &&
    ip -n client addr add 198.18.0.2/24 dev hgc && ip -n client link set hgc up && ip -n client link set lo up &&
    ip netns exec server httpd -p 198.18.0.1:8080 -h /www &&
    httpd -p 127.0.0.1:8081 -h /www
}

scrape() {
    wget -qO /tmp/scrape.new http://127.0.0.1:10114/metrics && mv /tmp/scrape.new /tmp/scrape
}

# ready: the exporter answers a scrape (loading the parser under TCG takes a while).
ready() {
    i=0
    while [ $i -lt 900 ]; do
        scrape && return 0
        kill -0 "$exporter" 2>/dev/null || { echo "the exporter exited"; return 1; }
        sleep 1
        i=$((i + 1))
    done
    echo "no answer within 900 s"
    return 1
}

# requests NETNS URL: 5 GETs with busybox wget, in NETNS ("" for this one).
requests() {
    for i in 1 2 3 4 5; do
        if [ -n "$1" ]; then ip netns exec "$1" wget -qO /dev/null "$2"; else wget -qO /dev/null "$2"; fi || return 1
    done
}

# counted: scrape until 20 requests and 20 responses show (10 in each view),
# at most 30 s; the test checks which series hold them.
counted() {
    i=0
    while [ $i -lt 60 ]; do
        scrape &&
            awk '/^http_(server|client)_requests_total/ { r += $NF }
                 /^http_(server|client)_request_duration_seconds_count/ { c += $NF }
                 END { exit !(r >= 20 && c >= 20) }' /tmp/scrape && return 0
        usleep 500000
        i=$((i + 1))
    done
    echo "not all counted within 30 s"
    return 1
}

ours() {
    grep -E 'hg_parse|http_ingress|http_egress'
}

# left_behind: programs and tc filters of ours still in the kernel, once
# the kernel has freed what the exporter closed (it may take a moment).
left_behind() {
    i=0
    while bpftool prog show | ours >/dev/null && [ $i -lt 20 ]; do
        usleep 500000
        i=$((i + 1))
    done
    echo "# bpftool prog show"
    bpftool prog show
    echo "# bpftool net show (host, server, client)"
    bpftool net show
    ip netns exec server bpftool net show
    ip netns exec client bpftool net show
    echo "# tc filter show"
    for dir in ingress egress; do
        tc filter show dev lo $dir
        ip netns exec server tc filter show dev hgs $dir
        ip netns exec client tc filter show dev hgc $dir
    done
}

section network network
http-golden-exporter --config.file /etc/http-golden-exporter.toml --user nobody >/tmp/exporter.log 2>&1 &
exporter=$!
if section ready ready; then
    section requests-veth requests client http://198.18.0.1:8080/index.html
    section requests-loopback requests "" http://127.0.0.1:8081/index.html
    section counted counted
    section metrics cat /tmp/scrape
    section programs bpftool prog show
fi
kill -TERM "$exporter"
section stopped wait "$exporter"
section exporter-log cat /tmp/exporter.log
section left-behind left_behind
