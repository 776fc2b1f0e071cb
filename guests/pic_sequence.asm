; pic_sequence: initialises both 8259A PICs four times over, each time with the full sequence in
; straight-line code: ICW1-ICW4 to the master (0x20/0x21), ICW1-ICW4 to the slave (0xA0/0xA1),
; then OCW1 (the interrupt masks) to both: ten OUTs with only MOV AL, imm8 between them, so a
; coalescing engine at extent 20 can take the whole sequence in one exit.  After each round it
; reads both masks back (IN 0x21, IN 0xA1: with A0=1 a read returns the IMR, Intel 8259A
; datasheet, order number 231468) and prints them.
;
; Rounds (master vector base, slave vector base, master mask, slave mask):
;   08h 70h A5h 5Ah;  20h 28h FBh FFh;  50h 58h 00h 81h;  08h 70h FFh FFh (all masked at the end)
; Every round is ICW1 11h (edge, cascade, ICW4 needed), ICW3 04h/02h (slave on IR2), ICW4 01h.
; Interrupts stay off (IF=0) throughout.
;
; Output (COM1): "pic_sequence: A5 5A FB FF 00 81 FF FF \n" when the masks read back right.
; Status (port 0xF4): 0, or 20 + the round (1-4) of the first mask that read back wrong.

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

PIC1_CMD  equ 0x20
PIC1_DATA equ 0x21
PIC2_CMD  equ 0xA0
PIC2_DATA equ 0xA1
ICW1      equ 0x11      ; edge triggered, cascade, ICW4 needed
ICW3_MASTER equ 0x04    ; a slave on IR2
ICW3_SLAVE  equ 0x02    ; slave identity 2
ICW4      equ 0x01      ; 8086 mode, normal EOI
FAIL_BASE equ 20

; One round: %1/%2 vector bases, %3/%4 masks, %5 round number.
%macro round 5
    mov al, ICW1
    out PIC1_CMD, al
    mov al, %1
    out PIC1_DATA, al
    mov al, ICW3_MASTER
    out PIC1_DATA, al
    mov al, ICW4
    out PIC1_DATA, al
    mov al, ICW1
    out PIC2_CMD, al
    mov al, %2
    out PIC2_DATA, al
    mov al, ICW3_SLAVE
    out PIC2_DATA, al
    mov al, ICW4
    out PIC2_DATA, al
    mov al, %3
    out PIC1_DATA, al
    mov al, %4
    out PIC2_DATA, al
    mov bx, ((FAIL_BASE + %5) << 8) | %3
    in al, PIC1_DATA
    call report
    mov bl, %4
    in al, PIC2_DATA
    call report
%endmacro

    mov si, msg_head
    call print
    xor bp, bp              ; BP = status: the first mismatch, 0 while all match
    round 0x08, 0x70, 0xA5, 0x5A, 1
    round 0x20, 0x28, 0xFB, 0xFF, 2
    round 0x50, 0x58, 0x00, 0x81, 3
    round 0x08, 0x70, 0xFF, 0xFF, 4
    mov al, 10
    call putc
    mov ax, bp
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

%include "lib/report.inc"


%include "lib/serial.inc"

msg_head: db "pic_sequence: ", 0

times 510 - ($ - $$) db 0
dw 0xAA55
