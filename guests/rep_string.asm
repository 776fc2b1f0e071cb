; rep_string: REP OUTSB and REP INSB in both directions.
;   1. CLD, REP OUTSB of a string to COM1's THR (no polling: this UART's THR is always empty
;      again by the time the guest writes; a 16550 with its FIFO would need it).
;   2. STD, REP OUTSB of a string stored back to front, from its last byte: prints it forwards.
;   3. REP INSB from COM1's scratch register (0x3FF), which returns the value last written to
;      it, into a 64-byte buffer, five times with DF and DI chosen so the fills overlap:
;        'a' x 64 at +0 up;  'B' x 20 at +63 down;  'c' x 5 at +10 up;  'D' x 17 at +30 down;
;        'e' x 0 at +0 (CX=0: nothing moves)
;      giving a (0-9), c (10-13), D (14-30), a (31-43), B (44-63).
;   4. REP OUTSB of that buffer forwards (CLD), then backwards (STD, from its last byte).
;   5. A position-weighted checksum of the buffer: sum of (i+1)*byte(i), 16 bits.
; After every REP the guest checks CX=0 and where SI or DI ended; a wrong value stops it.
;
; Output (COM1):
;   "rep_string: forward REP OUTSB\n"
;   "rep_string: backward REP OUTSB\n"
;   "rep_string: insb <the 64 buffer bytes>\n"
;   "rep_string: reversed <the 64 buffer bytes, last first>\n"
;   "rep_string: checksum XXXX\n"
; Status (port 0xF4): 0, or the number (10-18) of the first REP whose CX, SI or DI ended wrong.

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

BUF      equ 0x0600     ; the INSB buffer, in free conventional memory
BUF_LEN  equ 64

; REP %1 with DF %2 (cld/std), CX %3, SI/DI (%5) starting at %4; then CX must be 0 and %5
; must end at %6, else the guest stops with status %7.  DX must be set.
%macro rep_check 7
    mov %5, %4
    mov cx, %3
    %2
    rep %1
    mov bx, %6
    mov al, %7
    call check_%5
%endmacro

; Fill: scratch register = %1, then REP INSB (%2 = cld/std, %3 = count, %4 = buffer offset,
; %5 = status on failure).  DX must be the scratch register.
%macro fill 5
    mov al, %1
    out dx, al
    %if %3 == 0
    rep_check insb, %2, %3, BUF + %4, di, BUF + %4, %5
    %else
    %ifidn %2, cld
    rep_check insb, %2, %3, BUF + %4, di, BUF + %4 + %3, %5
    %else
    rep_check insb, %2, %3, BUF + %4, di, BUF + %4 - %3, %5
    %endif
    %endif
%endmacro

    mov dx, COM1 + THR
    rep_check outsb, cld, FWD_LEN, msg_fwd, si, msg_fwd + FWD_LEN, 10
    rep_check outsb, std, BWD_LEN, msg_bwd + BWD_LEN - 1, si, msg_bwd - 1, 11

    mov dx, COM1 + SCR
    fill 'a', cld, BUF_LEN, 0, 12
    fill 'B', std, 20, 63, 13
    fill 'c', cld, 5, 10, 14
    fill 'D', std, 17, 30, 15
    fill 'e', cld, 0, 0, 16

    mov si, msg_insb
    call print
    mov dx, COM1 + THR
    rep_check outsb, cld, BUF_LEN, BUF, si, BUF + BUF_LEN, 17
    mov si, msg_rev
    call print
    mov dx, COM1 + THR
    rep_check outsb, std, BUF_LEN, BUF + BUF_LEN - 1, si, BUF - 1, 18

    ; checksum: sum of (i+1) * byte(i)
    mov si, msg_sum
    call print
    xor bx, bx
    mov si, BUF
    mov cx, 1
.sum:
    lodsb
    xor ah, ah
    mul cx
    add bx, ax
    inc cx
    cmp cx, BUF_LEN
    jbe .sum
    mov ax, bx
    call puthex16
    mov al, 10
    call putc
    xor al, al
    jmp finish

; check_si/check_di: after a REP, CX must be 0 and SI/DI must equal BX, else stop with status AL.
check_si:
    mov di, si
check_di:
    cld
    cmp di, bx
    jne finish
    jcxz check_ok
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt
check_ok:
    ret


%include "lib/serial.inc"

msg_fwd:  db "rep_string: forward REP OUTSB", 10
FWD_LEN   equ $ - msg_fwd
msg_bwd:  db 10, "BSTUO PER drawkcab :gnirts_per"   ; "rep_string: backward REP OUTSB\n" reversed
BWD_LEN   equ $ - msg_bwd
msg_insb: db "rep_string: insb ", 0
msg_rev:  db 10, "rep_string: reversed ", 0
msg_sum:  db 10, "rep_string: checksum ", 0

times 510 - ($ - $$) db 0
dw 0xAA55
