; echo: reads COM1 input through the BIOS keyboard service INT 16h AH=00h and echoes every byte
; through INT 10h AH=0Eh, until a line that is exactly "quit"; then writes status 0 to 0xF4.
;
; Needs firmware (pykvmm's BIOS, whose INT 16h reads COM1's receive side).  Ends a line at CR or
; LF, so it works from a pipe ("quit\n") and from a terminal in raw mode ("quit\r").  It keeps no
; line buffer: it only tracks how much of "quit" the current line has matched so far, so lines of
; any length are fine.
;
; Output: a banner, "echo: type lines; a line quit ends\r\n", then the input up to and including
; the line "quit" and its end-of-line byte, byte for byte.

bits 16
org 0x7C00

DEBUG_EXIT equ 0xF4
TELETYPE   equ 0x0E
READ_KEY   equ 0x00
CR equ 13
LF equ 10
NO_MATCH equ 0xFF           ; this line can no longer be "quit"

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld

    mov si, banner
.banner:
    lodsb
    test al, al
    jz .lines
    call putc
    jmp .banner

.lines:
    xor di, di              ; di = characters of "quit" matched on this line
.key:
    mov ah, READ_KEY
    int 0x16                ; AL = the byte (AH = scan code, 0 for serial input)
    call putc
    cmp al, CR
    je .eol
    cmp al, LF
    je .eol
    cmp di, 4
    jae .mismatch           ; longer than "quit" (or already mismatched)
    cmp al, [quit + di]
    jne .mismatch
    inc di
    jmp .key
.mismatch:
    mov di, NO_MATCH
    jmp .key
.eol:
    cmp di, 4
    jne .lines
    xor al, al
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

; putc: AL through INT 10h teletype (which preserves every register).
putc:
    push ax
    push bx
    mov ah, TELETYPE
    xor bx, bx
    int 0x10
    pop bx
    pop ax
    ret

banner: db "echo: type lines; a line quit ends", 13, 10, 0
quit: db "quit"

times 510 - ($ - $$) db 0
dw 0xAA55
