; uart_spin: the headline guest. Prints a banner, then 1040 generated lines of 64 bytes
; (66,560 bytes, at least 64 KiB) through a polled 16550 on COM1, then writes 0 to the
; debug-exit port 0xF4.
;
; A 512-byte boot sector: under pykvmm it is entered at 0000:7C00 per the entry contract; under
; QEMU SeaBIOS enters it the same way but with interrupts on and its own stack, so it sets up its
; own segments, stack and IF.
;
; The polled loop is the classic one for every byte (IN from LSR, test THRE, JZ back, then OUT to
; THR), unrolled sixteen times, so that in address order each THR write is followed within a few
; instructions by the next LSR read and THR write with no backward branch in between: a coalescing
; engine that traps on one OUT finds the next IN and OUT inside its extent (10 instructions).

bits 16
org 0x7C00

COM1     equ 0x3F8
THR      equ 0      ; transmit holding register (DLAB=0)
DLL      equ 0      ; divisor latch low (DLAB=1)
DLM      equ 1      ; divisor latch high (DLAB=1)
LCR      equ 3
LSR      equ 5
LSR_THRE equ 0x20   ; transmit holding register empty
DEBUG_EXIT equ 0xF4

LINES    equ 1040
LINE_LEN equ 64     ; "line NNNNN " + 52 pattern chars + "\n"
PATTERN  equ 52
BUF      equ 0x0600 ; the line buffer, in free conventional memory

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld

    ; 115200 8N1: DLAB on, divisor 1, DLAB off with 8 data bits.
    mov dx, COM1 + LCR
    mov al, 0x80
    out dx, al
    mov dx, COM1 + DLL
    mov al, 1
    out dx, al
    inc dx                  ; DLM
    xor al, al
    out dx, al
    mov dx, COM1 + LCR
    mov al, 0x03
    out dx, al

    mov si, banner
    call print

    xor bp, bp              ; bp = line number
.line:
    ; "line NNNNN " with NNNNN the decimal line number
    mov di, BUF
    mov ax, 'li'
    stosw
    mov ax, 'ne'
    stosw
    mov al, ' '
    stosb
    mov ax, bp
    add di, 4               ; digits are written right to left
    mov cx, 5
    mov bx, 10
.digit:
    xor dx, dx
    div bx
    add dl, '0'
    mov [di], dl
    dec di
    loop .digit
    add di, 6
    mov al, ' '
    stosb
    ; 52 printable characters, rotating with the line number
    mov cx, PATTERN
    mov ax, bp
    xor dx, dx
    mov bx, 94
    div bx                  ; dl = line mod 94
    mov al, dl
.pat:
    add al, '!'
    stosb
    sub al, '!' - 1
    cmp al, 94
    jb .nowrap
    xor al, al
.nowrap:
    loop .pat
    mov al, 10              ; "\n" ends the 64-byte line
    stosb
    mov si, BUF
    call print
    inc bp
    cmp bp, LINES
    jb .line

    mov al, 0
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

; print: send the 64-byte line at ds:si to COM1, each byte after polling LSR.THRE.
print:
    mov cx, LINE_LEN / 16
    mov dh, COM1 >> 8
.sixteen:
%assign k 0
%rep 16
.poll %+ k:
    mov dl, (COM1 + LSR) & 0xFF
    in al, dx
    test al, LSR_THRE
    jz .poll %+ k
    lodsb
    mov dl, (COM1 + THR) & 0xFF
    out dx, al
%assign k k + 1
%endrep
    dec cx
    jnz .sixteen            ; a near jump: the loop body is longer than LOOP can reach
    ret

banner: db "pykvmm uart_spin: 1040 lines of 64 bytes through a polled 16550", 10  ; 64 bytes

times 510 - ($ - $$) db 0
dw 0xAA55
