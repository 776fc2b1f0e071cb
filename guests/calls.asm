; calls: calls and returns inside a block.  Each of 64 passes separates its four IO instructions
; (to and from COM1's scratch register, 0x3FF) with calls to short subroutines: an indirect
; near call (CALL SI), a call with stack arguments and RET 4, and a nested pair that makes a
; near call and a far call (CALL 0000:far, RETF).  Every subroutine does 16-bit arithmetic, so a
; return to the wrong place, a wrong SP or a lost register changes the printed words.
;
; Per pass, all 16-bit (AL/AH/BH are parts of AX/BX):
;   AL = BL; OUT (scratch = AL)
;   mix:      BX += AX; BX = rol(BX, 3); AL ^= BH        (called through SI)
;   OUT (scratch = AL)
;   PUSH BX; PUSH AX; combine: AX = (AX - BX) ^ A5C3h, RET 4
;   OUT (scratch = AL)
;   twice:    mix; BX += 1; far call to a stub that calls mix and returns with RETF
;   IN (AL = scratch: the AL of the third OUT);  the pass's word is AX
; from AX = 0, BX = 1357h.
; Output (COM1): four lines of 16 words (four hex digits each, separated by a space), then
;   "calls: bx=XXXX sp=7C00\n".
; Status (port 0xF4): 0, or 1 if SP did not come back to 7C00h.

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

PASSES     equ 64
PER_LINE   equ 16
BX0        equ 0x1357
COMBINE_XOR equ 0xA5C3
STACK_TOP  equ 0x7C00
BUF        equ 0x0600   ; the pass words, in free conventional memory

    mov dx, COM1 + SCR
    mov di, BUF
    mov si, mix
    mov bx, BX0
    xor ax, ax
    mov cx, PASSES
.pass:
    mov al, bl
    out dx, al              ; IO
    call si
    out dx, al              ; IO
    push bx
    push ax
    call combine
    out dx, al              ; IO
    call twice
    in al, dx               ; IO
    stosw
    loop .pass

    mov si, BUF
.line:
    mov cx, PER_LINE
.word:
    lodsw
    call puthex16
    mov al, ' '
    cmp cx, 1
    jne .sep
    mov al, 10
.sep:
    call putc
    loop .word
    cmp si, BUF + 2 * PASSES
    jb .line

    mov si, msg_bx
    call print
    mov ax, bx
    call puthex16
    call print              ; " sp="
    mov ax, sp
    call puthex16
    mov al, 10
    call putc
    cmp sp, STACK_TOP
    mov al, 0
    je finish
    mov al, 1
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

mix:
    add bx, ax
    rol bx, 3
    xor al, bh
    ret

; combine: AX = (first argument - second) ^ COMBINE_XOR, where the first is the one pushed last.
combine:
    push bp
    mov bp, sp
    mov ax, [bp + 4]
    sub ax, [bp + 6]
    xor ax, COMBINE_XOR
    pop bp
    ret 4

twice:
    call mix
    inc bx
    call 0x0000:far_mix
    ret

far_mix:
    call mix
    retf


%include "lib/serial.inc"

msg_bx:  db "calls: bx=", 0
         db " sp=", 0

times 510 - ($ - $$) db 0
dw 0xAA55
