; cmos_clock: reads the date and time from the MC146818 RTC and prints them as
; "YYYY-MM-DD HH:MM:SS\n" on COM1, then writes status 0 to port 0xF4.
;
; Runs with or without firmware (it programs COM1 itself and only reads the RTC).  pykvmm's RTC,
; like a PC's under Linux, holds UTC.
;
; Reading follows the MC146818 datasheet ("DS"): the time registers may be read only while status
; register A's UIP bit is 0, and from UIP=0 there are at least 244 us before an update starts.  A
; VM exit per register does not reliably fit 14 reads into 244 us, so the guest also does what
; operating systems do: it reads the registers twice and starts again until both reads agree.
; Register B says how the values are encoded: DM (bit 2) = 1 for binary, 0 for BCD; 24/12
; (bit 1) = 1 for 24-hour, else 12-hour with bit 7 of the hours meaning PM.  The century is the
; IBM PC/AT CMOS byte 32h, in the same encoding.

bits 16
org 0x7C00

COM1     equ 0x3F8
LCR      equ 3
LSR      equ 5
LSR_THRE equ 0x20
DEBUG_EXIT equ 0xF4

CMOS_INDEX equ 0x70
CMOS_DATA  equ 0x71
RTC_SECONDS equ 0x00
RTC_MINUTES equ 0x02
RTC_HOURS   equ 0x04
RTC_DAY     equ 0x07        ; day of the month
RTC_MONTH   equ 0x08
RTC_YEAR    equ 0x09
RTC_A       equ 0x0A
RTC_B       equ 0x0B
RTC_CENTURY equ 0x32        ; IBM PC/AT
RTC_A_UIP   equ 0x80
RTC_B_BINARY equ 0x04       ; DM
RTC_B_24H    equ 0x02
HOURS_PM     equ 0x80       ; 12-hour mode only
FIELDS equ 7

buf1 equ 0x0500             ; two copies of the raw registers, in free conventional memory
buf2 equ 0x0510

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld

    ; COM1: 115200 8N1 (divisor 1).
    mov dx, COM1 + LCR
    mov al, 0x80
    out dx, al
    mov dl, COM1 & 0xFF
    mov al, 1
    out dx, al
    inc dx
    xor al, al
    out dx, al
    mov dl, (COM1 + LCR) & 0xFF
    mov al, 0x03
    out dx, al

.consistent:
    mov di, buf1
    call read_fields
    mov di, buf2
    call read_fields
    mov si, buf1
    mov di, buf2
    mov cx, FIELDS
    repe cmpsb
    jne .consistent

    mov al, RTC_B
    out CMOS_INDEX, al
    in al, CMOS_DATA
    mov bl, al              ; bl = register B

    mov si, fields
    mov di, buf1
    mov cx, FIELDS
.field:
    mov al, [di]
    inc di
    xor dl, dl              ; dl = the PM bit (12-hour hours only)
    cmp byte [si], RTC_HOURS
    jne .decode
    test bl, RTC_B_24H
    jnz .decode
    mov dl, al
    and dl, HOURS_PM
    and al, ~HOURS_PM & 0xFF
.decode:
    test bl, RTC_B_BINARY
    jnz .binary
    mov ah, al              ; BCD: tens in the high nibble, units in the low
    shr ah, 4
    and al, 0x0F
    aad                     ; al = ah * 10 + al
.binary:
    cmp byte [si], RTC_HOURS
    jne .print
    test bl, RTC_B_24H
    jnz .print
    cmp al, 12              ; 12-hour: 12 AM is 00, 12 PM is 12
    jne .not12
    xor al, al
.not12:
    test dl, dl
    jz .print
    add al, 12
.print:
    aam                     ; ah = tens, al = units
    add ax, '00'
    xchg al, ah
    call putc
    xchg al, ah
    call putc
    mov al, [si + 1]        ; the separator that follows this field
    test al, al
    jz .next
    call putc
.next:
    add si, 2
    loop .field

    xor al, al
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

; read_fields: wait until UIP=0, then read the FIELDS registers listed in `fields` to es:di.
read_fields:
    mov al, RTC_A
    out CMOS_INDEX, al
    in al, CMOS_DATA
    test al, RTC_A_UIP
    jnz read_fields
    mov si, fields
    mov cx, FIELDS
.one:
    lodsb
    inc si                  ; skip the separator
    out CMOS_INDEX, al
    in al, CMOS_DATA
    stosb
    loop .one
    ret

%include "lib/putc.inc"

; Register, then the character printed after it (0: none): "CCYY-MM-DD HH:MM:SS\n".
fields:
    db RTC_CENTURY, 0
    db RTC_YEAR, '-'
    db RTC_MONTH, '-'
    db RTC_DAY, ' '
    db RTC_HOURS, ':'
    db RTC_MINUTES, ':'
    db RTC_SECONDS, 10

times 510 - ($ - $$) db 0
dw 0xAA55
