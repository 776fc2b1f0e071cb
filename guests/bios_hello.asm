; bios_hello: prints a line through the BIOS teletype service, INT 10h AH=0Eh, then writes
; status 0 to port 0xF4.
;
; Needs firmware (pykvmm's BIOS, or any PC BIOS): with --no-firmware the IVT is all zeros and
; INT 10h jumps to 0000:0000.  Before printing it checks the one BIOS data area word its output
; depends on under pykvmm's BIOS, COM1's base port at 0040:0000 (IBM PC convention; 3F8h), and
; ends with status 1 if it is wrong, without printing.
;
; Output: "Hello from the BIOS: INT 10h AH=0Eh\r\n" (teletype output is a terminal's: CR, LF).

bits 16
org 0x7C00

DEBUG_EXIT equ 0xF4
BDA_COM1   equ 0x400        ; linear address of 0040:0000
COM1       equ 0x3F8
TELETYPE   equ 0x0E
PAGE0      equ 0            ; BH: the display page; BL: the colour (graphics modes only)

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld

    mov al, 1
    cmp word [BDA_COM1], COM1
    jne .done

    mov si, hello
    xor bx, bx              ; page 0, colour 0
.next:
    lodsb
    test al, al
    jz .printed
    mov ah, TELETYPE
    int 0x10                ; the BIOS preserves every register for AH=0Eh
    jmp .next
.printed:
    xor al, al
.done:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

hello: db "Hello from the BIOS: INT 10h AH=0Eh", 13, 10, 0

times 510 - ($ - $$) db 0
dw 0xAA55
