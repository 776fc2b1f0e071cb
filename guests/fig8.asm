; fig8: the instruction stream of the patent's Figure 8.  A 15-instruction loop body has IO
; instructions at positions 3, 5, 8 and 11: with the trap at 3, an extent of ten covers 4-13,
; finds IO at 5, 8 and 11 and makes 3-11 one block.  The body runs 1000 times, then one summary
; line shows every register the body computes, so a block emulated wrongly changes the text.
;
; The IO goes to COM1's scratch register (0x3FF: an IN returns the last OUT, so the stream is
; deterministic) and to port 0xEE, which no device claims (writes are dropped).
;
; Output (COM1):
;   "fig8: 1000 passes bx=XXXX si=XXXX di=XXXX bp=XXXX scr=XX\n"
; with the values (hex) of this recurrence, from bx=0 si=1234h di=0 bp=0, all 16-bit:
;   bx += 1; al = bx & FFh; si += bx; di += al ^ 5Ah; si = rol(si, 1) ^ di; bp += al - si
; and scr the scratch register read at the end (the last bx, low byte).
; Status (port 0xF4): 0, or 1 if CX did not count down to 0 (the loop left early).

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

UNCLAIMED  equ 0xEE     ; no device decodes it: writes are dropped
PASSES     equ 1000

    mov dx, COM1 + SCR
    xor bx, bx
    mov si, 0x1234
    xor di, di
    xor bp, bp
    xor ax, ax              ; AH stays 0: instruction 7 adds AX
    mov cx, PASSES
.pass:
    inc bx                  ; 1
    mov al, bl              ; 2
    out dx, al              ; 3  IO: SCR = bl
    add si, bx              ; 4
    in al, dx               ; 5  IO: al = SCR
    xor al, 0x5A            ; 6
    add di, ax              ; 7
    out UNCLAIMED, al       ; 8  IO: dropped
    rol si, 1               ; 9
    xor si, di              ; 10
    in al, dx               ; 11 IO: al = SCR = bl
    add bp, ax              ; 12
    sub bp, si              ; 13
    dec cx                  ; 14
    jnz .pass               ; 15

    mov al, 1
    test cx, cx
    jnz finish

    push si                 ; print walks SI
    mov si, msg_bx
    call print
    mov ax, bx
    call puthex16
    call print              ; " si="
    pop ax
    call puthex16
    call print              ; " di="
    mov ax, di
    call puthex16
    call print              ; " bp="
    mov ax, bp
    call puthex16
    call print              ; " scr="
    mov dx, COM1 + SCR
    in al, dx
    call puthex
    mov al, 10
    call putc
    xor al, al
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt


%include "lib/serial.inc"

msg_bx:  db "fig8: 1000 passes bx=", 0
         db " si=", 0
         db " di=", 0
         db " bp=", 0
         db " scr=", 0

times 510 - ($ - $$) db 0
dw 0xAA55
