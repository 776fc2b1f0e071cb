; mmio_uart: polled output through pykvmm's memory-mapped 16550 at physical 0xB0000 (register
; stride 1, inside the 0xA0000-0xBFFFF device hole), then status 0 to port 0xF4.
;
; The same polled loop as uart_spin, with MOV instead of IN/OUT: every access is a
; KVM_EXIT_MMIO.  Needs no firmware: it programs the UART itself (115200 8N1, FIFOs on), so it
; runs the same with and without pykvmm's BIOS.  Its output goes to pykvmm's --serial2.
;
; Output: a banner line, then 100 lines "mmio line NN: the quick brown fox jumps over the lazy
; dog\n" for NN = 00..99.

bits 16
org 0x7C00

UART_SEG equ 0xB000         ; 0xB0000 / 16
THR      equ 0              ; transmit holding register (DLAB=0)
DLL      equ 0              ; divisor latch (DLAB=1)
DLM      equ 1
FCR      equ 2
LCR      equ 3
LSR      equ 5
LSR_THRE equ 0x20           ; transmit holding register empty
DEBUG_EXIT equ 0xF4
LINES    equ 100

start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    cld
    mov ax, UART_SEG
    mov es, ax

    mov byte [es:LCR], 0x80 ; DLAB on: divisor 1 = 115200 baud
    mov byte [es:DLL], 1
    mov byte [es:DLM], 0
    mov byte [es:LCR], 0x03 ; DLAB off, 8N1
    mov byte [es:FCR], 0x07 ; FIFOs on, both cleared

    mov si, banner
    call print
    xor cx, cx              ; cl = line number
.line:
    mov si, head
    call print
    mov al, cl
    aam                     ; ah = tens, al = units
    add ax, '00'
    xchg al, ah
    call putc
    xchg al, ah
    call putc
    mov si, tail
    call print
    inc cx
    cmp cx, LINES
    jb .line

    xor al, al
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

print:
    lodsb
    test al, al
    jz .done
    call putc
    jmp print
.done:
    ret

; putc: AL to the memory-mapped UART, polling LSR.THRE.
putc:
    test byte [es:LSR], LSR_THRE
    jz putc
    mov [es:THR], al
    ret

banner: db "pykvmm mmio_uart: polled output through the 16550 at 0xB0000", 10, 0
head:   db "mmio line ", 0
tail:   db ": the quick brown fox jumps over the lazy dog", 10, 0

times 510 - ($ - $$) db 0
dw 0xAA55
