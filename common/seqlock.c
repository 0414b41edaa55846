/* The frame ring's seqlock orderings (common/frame_ring.py loads this through ctypes).
 *
 * numpy's loads and stores are plain ones: on x86 (TSO) the CPU never reorders stores with
 * stores or loads with loads, so the seqlock works by accident; on the Pi's Cortex-A76 (ARMv8,
 * weakly ordered) a reader may see the new pixels before the odd sequence number, or its
 * second load of the number may be satisfied before its pixel loads, and a torn frame passes
 * both checks. These are the barriers the Linux kernel's seqlock uses, as C11 atomics:
 *   writer: store(seq, odd); release fence; pixels; store_release(seq, even)
 *   reader: load_acquire(seq); pixels; acquire fence; load(seq)
 * On aarch64 they compile to dmb ish / stlr / ldar / dmb ishld; on x86 to plain moves (no
 * instruction: TSO already orders them), so x86 pays only the ctypes call.
 */
#include <stdint.h>

uint64_t ft_seq_begin_read(const uint64_t *seq) {
    return __atomic_load_n(seq, __ATOMIC_ACQUIRE);
}

uint64_t ft_seq_end_read(const uint64_t *seq) {
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(seq, __ATOMIC_RELAXED);
}

void ft_seq_begin_write(uint64_t *seq, uint64_t odd) {
    __atomic_store_n(seq, odd, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

void ft_seq_end_write(uint64_t *seq, uint64_t even) {
    __atomic_store_n(seq, even, __ATOMIC_RELEASE);
}
