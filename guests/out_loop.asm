; out_loop: exactly 200,000 byte OUTs to port 0xEE, which no device claims, then debug-exit 0.
; The exit-cost benchmark (scripts/bench_exits.py) and the exit-count cross-check with KVM's own
; statistics use it: every OUT is one KVM_EXIT_IO, and nothing else exits but the final OUT.

bits 16
org 0x7C00

UNCLAIMED_PORT equ 0xEE
OUTER equ 4
INNER equ 50000

start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    mov bx, OUTER
.outer:
    mov cx, INNER
.inner:
    out UNCLAIMED_PORT, al
    loop .inner
    dec bx
    jnz .outer
    mov al, 0
    out 0xF4, al
.halt:
    hlt
    jmp .halt

times 510 - ($ - $$) db 0
dw 0xAA55
