; pit_program: programs 8254 counter 0 eight times with straight-line code, each programming
; sequence three OUTs (control word to 0x43, count LSB then MSB to 0x40) with only MOV AL, imm8
; in between, and reads each counter's status back with the read-back command (Intel 8254
; datasheet, order number 231164, "DS": control word 0xE2 = read-back, status only, counter 0).
;
; The status byte is D7 OUT, D6 NULL COUNT, D5-D0 the counter's programmed control bits (RW1
; RW0 M2 M1 M0 BCD).  OUT and NULL COUNT depend on when CLK pulses fall relative to the guest's
; instructions (NULL COUNT clears at the first CLK after the count is written: 838 ns), so both
; are masked off; what is left must equal bits 5-0 of the control word that was written.
;
; Output (COM1): "pit_program: " then the eight masked status bytes in hex, each followed by a
; space, then "\n".  Sequences (control word, count): 30h 1234h (mode 0), 32h 0010h (mode 1),
; 34h 2E9Ch (mode 2), 36h 0000h (mode 3), 38h 00FFh (mode 4), 3Ah 8000h (mode 5), 35h 1000h
; (mode 2, BCD count 1000), 37h 0000h (mode 3, BCD).  Expected statuses: 30 32 34 36 38 3A 35 37.
; Status (port 0xF4): 0 when every status matched; else 10 + the number (1-8) of the first
; sequence whose status did not (the text shows all eight either way).

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

PIT_CH0   equ 0x40
PIT_CTRL  equ 0x43
PIT_READBACK_STATUS0 equ 0xE2   ; DS read-back: /COUNT=1 (no count), /STATUS=0, CNT0
STATUS_CONTROL_BITS  equ 0x3F   ; D5-D0: the programmed RW, mode and BCD bits
FAIL_BASE equ 10

; One programming sequence: %1 control word, %2 16-bit count; then the masked status goes to
; COM1 and is checked against the control word (sequence number %3).
%macro program 3
    mov al, %1
    out PIT_CTRL, al
    mov al, (%2) & 0xFF
    out PIT_CH0, al
    mov al, (%2) >> 8
    out PIT_CH0, al
    mov al, PIT_READBACK_STATUS0
    out PIT_CTRL, al
    in al, PIT_CH0
    and al, STATUS_CONTROL_BITS
    mov bx, ((FAIL_BASE + %3) << 8) | ((%1) & STATUS_CONTROL_BITS)
    call report
%endmacro

    mov si, msg_head
    call print
    xor bp, bp              ; BP = status: the first mismatch, 0 while all match
    program 0x30, 0x1234, 1
    program 0x32, 0x0010, 2
    program 0x34, 0x2E9C, 3
    program 0x36, 0x0000, 4
    program 0x38, 0x00FF, 5
    program 0x3A, 0x8000, 6
    program 0x35, 0x1000, 7
    program 0x37, 0x0000, 8
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

msg_head: db "pit_program: ", 0

times 510 - ($ - $$) db 0
dw 0xAA55
