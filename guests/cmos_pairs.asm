; cmos_pairs: CMOS index/data pairs on the MC146818's general-purpose RAM, indexes 40h-7Fh (no
; PC BIOS or clock function lives there, and the AT checksum covers only 10h-2Dh).  The clock
; registers 00h-0Dh are never touched.
;   1. write pairs, ascending:  OUT 70h, index; OUT 71h, value   with value(i) = 11 + 37*i
;      (i = index - 40h, 8 bits)
;   2. read-modify-write, descending, with the NMI-disable bit (80h) set in every index write
;      (the index itself is bits 0-6, so 80h|i selects byte i):
;      OUT 70h, 80h|index; IN 71h; ROL 3; XOR index; OUT 71h  (the index stays selected)
;   3. read pairs, ascending: OUT 70h, index; IN 71h, printed and summed.
; Then it writes index 40h with NMI enabled again.
;
; Output (COM1), hex:
;   "cmos_pairs: 40 <32 bytes, two digits each>\n"
;   "cmos_pairs: 60 <32 bytes>\n"
;   "cmos_pairs: sum XXXX fletcher XXXX\n"
; sum = 16-bit sum of the 64 final bytes; fletcher = 16-bit sum of the running sums.
; Status (port 0xF4): 0.

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

CMOS_INDEX equ 0x70
CMOS_DATA  equ 0x71
NMI_DISABLE equ 0x80    ; index bit 7 (PC/AT): masks NMI, not part of the index
FIRST      equ 0x40     ; general-purpose RAM: 40h-7Fh
END        equ 0x80
VALUE0     equ 11
VALUE_STEP equ 37

    ; 1. write pairs
    mov bl, FIRST
    mov ah, VALUE0
.write:
    mov al, bl
    out CMOS_INDEX, al
    mov al, ah
    out CMOS_DATA, al
    add ah, VALUE_STEP
    inc bl
    cmp bl, END
    jb .write

    ; 2. read-modify-write pairs, descending
    mov bl, END - 1
.modify:
    mov al, bl
    or al, NMI_DISABLE
    out CMOS_INDEX, al
    in al, CMOS_DATA
    rol al, 3
    xor al, bl
    out CMOS_DATA, al
    dec bl
    cmp bl, FIRST
    jae .modify

    ; 3. read pairs: print 32 per line, sum into CX, running sums into DI
    xor cx, cx
    xor di, di
    mov bl, FIRST
.line:
    mov si, msg_head
    call print
    mov al, bl
    call puthex
.read:
    mov al, ' '
    call putc
    mov al, bl
    out CMOS_INDEX, al
    in al, CMOS_DATA
    call puthex
    xor ah, ah
    add cx, ax
    add di, cx
    inc bl
    test bl, 0x1F
    jnz .read
    mov al, 10
    call putc
    cmp bl, END
    jb .line

    mov al, FIRST           ; leave NMI enabled
    out CMOS_INDEX, al

    mov si, msg_head
    call print
    call print              ; "sum "
    mov ax, cx
    call puthex16
    call print              ; " fletcher "
    mov ax, di
    call puthex16
    mov al, 10
    call putc
    xor al, al
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt


%include "lib/serial.inc"

msg_head: db "cmos_pairs: ", 0
          db "sum ", 0
          db " fletcher ", 0

times 510 - ($ - $$) db 0
dw 0xAA55
