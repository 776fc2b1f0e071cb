; flags: flag-heavy arithmetic between IO instructions.  For each of nine input vectors (a, b,
; count, carry) the guest runs a fixed chain of fourteen steps, each followed by an OUT to COM1's
; scratch register (OUT leaves the flags alone), and records a result register and FLAGS after
; every step (PUSHF; POP [DI]: neither touches the flags).  The chain feeds each step's carry
; into the next: ADC/SBB in 16 and 8 bits, RCL/RCR through carry by CL (counts 0, 1, 4, 9, 16,
; 17, 31, 33, 255: zero, above the width, and masked to five bits), SHL/SAR by CL, RCR/SAR by 1,
; SHR by 3, SUB, LAHF, SETB/SETO and CMOVG.
;
; Flags a step leaves undefined (Intel SDM / AMD APM: OF after multi-bit shifts and rotates, AF
; after shifts, CF after SHL/SAR by CL, which may reach the width) are masked off before
; printing, so the text is the same on every x86 that follows the manuals; the masks are in
; `masks`, one per step.
;
; Steps (AX=a, BX=b, CL=count, CF=carry to begin with):
;    1 ADC AX, BX           AX   all six flags
;    2 SBB BX, AX           BX   all six
;    3 ADC AL, BH; SBB AH, BL   AX   all six (of the SBB)
;    4 RCL AX, CL           AX   CF SF ZF AF PF (OF only defined for a count of 1)
;    5 RCR BL, CL           BX   CF SF ZF AF PF
;    6 SHL BX, CL           BX   SF ZF PF
;    7 STC; RCR AX, 1       AX   OF SF ZF PF CF
;    8 SAR AX, 1            AX   OF SF ZF PF CF
;    9 SHR BX, 3            BX   SF ZF PF CF
;   10 SAR BH, CL           BX   SF ZF PF
;   11 SUB AX, BX           AX   all six
;   12 LAHF                 AX   all six (still the SUB's)
;   13 SETB AL; SETO AH     AX   all six
;   14 CMOVG BX, AX         BX   all six
; Output (COM1): per vector one line of fourteen "RRRR:FFFF" (result, masked FLAGS, hex) pairs
; separated by spaces, then "flags: 9 vectors\n".
; Status (port 0xF4): 0.

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

VECTOR_SIZE equ 6       ; a, b, count byte, carry byte
BUF        equ 0x0600   ; the records: result, FLAGS for every step of every vector

; After a step: record %1 and FLAGS, then an IO.  Nothing here changes the flags.
%macro step 1
    mov [di], %1
    pushf
    pop word [di + 2]
    lea di, [di + 4]
    out dx, al
%endmacro

    mov dx, COM1 + SCR
    mov si, vectors
    mov di, BUF
.vector:
    mov ax, [si]
    mov bx, [si + 2]
    mov cx, [si + 4]
    add si, VECTOR_SIZE
    shr ch, 1               ; CF = carry
    adc ax, bx
    step ax
    sbb bx, ax
    step bx
    adc al, bh
    sbb ah, bl
    step ax
    rcl ax, cl
    step ax
    rcr bl, cl
    step bx
    shl bx, cl
    step bx
    stc
    rcr ax, 1
    step ax
    sar ax, 1
    step ax
    shr bx, 3
    step bx
    sar bh, cl
    step bx
    sub ax, bx
    step ax
    lahf
    step ax
    setb al
    seto ah
    step ax
    cmovg bx, ax
    step bx
    cmp si, vectors_end
    jb .vector

    mov si, BUF
.line:
    mov bx, masks
.pair:
    lodsw
    call puthex16
    mov al, ':'
    call putc
    lodsw
    and ax, [bx]
    call puthex16
    add bx, 2
    mov al, ' '
    cmp bx, masks_end
    jb .sep
    mov al, 10
.sep:
    call putc
    cmp bx, masks_end
    jb .pair
    cmp si, di
    jb .line

    mov si, msg_end
    call print
    xor al, al
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt


%include "lib/serial.inc"

ALL6   equ 0x08D5       ; OF SF ZF AF PF CF
ROT    equ 0x00D5       ; SF ZF AF PF CF
SZP    equ 0x00C4       ; SF ZF PF
OSZPC  equ 0x08C5
SZPC   equ 0x00C5
masks:  dw ALL6, ALL6, ALL6, ROT, ROT, SZP, OSZPC, OSZPC, SZPC, SZP, ALL6, ALL6, ALL6, ALL6
masks_end:
;             a       b     count carry
vectors: dw 0x1234, 0xFEDC
         db 0, 0
         dw 0xFFFF, 0x0001
         db 1, 1
         dw 0x8000, 0x8000
         db 4, 0
         dw 0x7FFF, 0x0001
         db 9, 1
         dw 0x00FF, 0xFF00
         db 16, 1
         dw 0xA5A5, 0x5A5A
         db 17, 0
         dw 0x0000, 0x0000
         db 31, 1
         dw 0xC350, 0x1F3A
         db 33, 0
         dw 0x8001, 0x7FFE
         db 255, 1
vectors_end:
msg_end: db "flags: 9 vectors", 10, 0

times 510 - ($ - $$) db 0
dw 0xAA55
