; smc: self-modifying code between two IO instructions.  In each of 200 passes the guest rewrites
; the opcode of the instruction at `.patch` (before the IN) and its immediate (after the IN, so the
; store and the rewritten instruction both lie between the two IOs), then runs it:
;     IN  AL, DX          ; AL = COM1 scratch register (0x3FF): the previous pass's result
;     MOV [patch+1], BL   ; the immediate for this pass
; .patch:
;     <op> AL, imm8       ; op = ADD (04h), XOR (34h), SUB (2Ch), cycling with the pass number
;     OUT DX, AL          ; scratch register = the new result
; A coalescing engine that reuses a block or a decoded instruction without noticing the new
; bytes computes a different chain, and every later value shows it.
;
; Pass p (0-199): imm = 3 + 7p (8 bits), op = (ADD, XOR, SUB)[p mod 3]; the scratch register
; starts at 5Ah.
; Output (COM1): ten lines of 20 results (two hex digits each, no separator), then
;   "smc: 200 passes, scratch XX\n"   with XX the scratch register read at the end.
; Status (port 0xF4): 0, or 1 if the scratch register does not hold the last result.

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

PASSES     equ 200
PER_LINE   equ 20
SEED       equ 0x5A
IMM0       equ 3
IMM_STEP   equ 7
BUF        equ 0x0600   ; the results, in free conventional memory

    mov dx, COM1 + SCR
    mov al, SEED
    out dx, al
    mov di, BUF
    mov bl, IMM0
    xor si, si              ; SI = index into ops
    mov cx, PASSES
.pass:
    mov ah, [ops + si]
    mov [.patch], ah         ; rewrite the opcode
    in al, dx               ; IO
    mov [.patch + 1], bl     ; rewrite the immediate
.patch:
    add al, 0               ; rewritten on every pass
    out dx, al              ; IO
    stosb
    add bl, IMM_STEP
    inc si
    cmp si, OPS
    jb .same
    xor si, si
.same:
    loop .pass

    ; print the results, PER_LINE to a line
    mov si, BUF
.line:
    mov cx, PER_LINE
.byte:
    lodsb
    call puthex
    loop .byte
    mov al, 10
    call putc
    cmp si, BUF + PASSES
    jb .line

    mov si, msg_tail
    call print
    in al, dx               ; DX is still the scratch register
    call puthex
    mov ah, al
    mov al, 10
    call putc
    cmp ah, [BUF + PASSES - 1]
    mov al, 0
    je finish
    mov al, 1
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt


%include "lib/serial.inc"

ops:      db 0x04, 0x34, 0x2C   ; ADD AL, imm8; XOR AL, imm8; SUB AL, imm8
OPS       equ $ - ops
msg_tail: db "smc: 200 passes, scratch ", 0

times 510 - ($ - $$) db 0
dw 0xAA55
