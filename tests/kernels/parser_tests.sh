# The packet-level parser tests (BPF_PROG_TEST_RUN) on the guest's kernel
# (sourced by init.sh): each test binary the initramfs carries in /tests.
for t in /tests/*; do
    section "test-${t##*/}" env CI=true "$t" --test-threads=1
done
