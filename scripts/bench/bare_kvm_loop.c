/* A bare KVM_RUN loop in C: the floor pykvmm's Python run loop is compared with.
 *
 * Loads a flat real-mode guest at 0x7C00, enters it at 0000:7C00, and answers every exit as
 * cheaply as possible (OUTs are dropped, INs return 0xFF) until an OUT to port 0xF4.
 * Prints: exits=<n> seconds=<wall time of the run loop>.
 * Built and run by scripts/bench_exits.py; written for pykvmm, not taken from elsewhere.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s GUEST.bin\n", argv[0]); return 2; }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    size_t mem_size = 2 << 20;
    uint8_t *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FILE *f = fopen(argv[1], "rb");
    if (!f) die(argv[1]);
    size_t n = fread(mem + 0x7C00, 1, 0x10000, f);
    fclose(f);
    if (n == 0) die("empty guest");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    ioctl(vm, KVM_SET_TSS_ADDR, 0xFFFBD000UL);
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    struct kvm_segment *segs[] = {&sregs.cs, &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss};
    for (int i = 0; i < 6; i++) { segs[i]->selector = 0; segs[i]->base = 0; }
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = 0x7C00, .rsp = 0x7C00, .rflags = 2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
    struct timespec t0, t1;
    long exits = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        exits++;
        if (run->exit_reason == KVM_EXIT_IO) {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0xF4) break;
            if (run->io.direction == KVM_EXIT_IO_IN) memset(data, 0xFF, run->io.size * run->io.count);
        } else if (run->exit_reason == KVM_EXIT_MMIO) {
            if (!run->mmio.is_write) memset(run->mmio.data, 0xFF, run->mmio.len);
        } else {
            fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("exits=%ld seconds=%.6f\n", exits, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
