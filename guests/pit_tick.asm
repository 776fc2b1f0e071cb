; pit_tick: counts PIT IRQ0 ticks across one second of the RTC and prints the count.
;
; It programs everything it uses itself, so it runs the same with pykvmm's firmware and with
; --no-firmware: COM1 (115200 8N1), both 8259A PICs (AT layout, only IRQ0 unmasked), its own
; IRQ0 handler in the IVT, and PIT counter 0 in mode 2 with count 0 (65536), the PC's
; 1193182 / 65536 = 18.2065 Hz.  The second is timed with the RTC, never with the ticks: the
; guest sleeps in STI;HLT, and after every tick reads the RTC seconds register (skipping reads
; while status A's UIP bit says the registers are being updated, as the MC146818 datasheet
; requires).  The count restarts at the first change of the seconds and is taken at the next;
; both changes are seen at the first tick after them, so the count is 18 or 19.
;
; Output (COM1): "pit_tick: NN ticks in one RTC second\n".
; Status (port 0xF4): 0 when it printed a count; 1 when the RTC did not change within 64 ticks
; (3.5 s: the clock is not running).

bits 16
org 0x7C00

COM1     equ 0x3F8
LCR      equ 3
LSR      equ 5
LSR_THRE equ 0x20
DEBUG_EXIT equ 0xF4

PIC1_CMD  equ 0x20
PIC1_DATA equ 0x21
PIC2_CMD  equ 0xA0
PIC2_DATA equ 0xA1
EOI       equ 0x20          ; OCW2 non-specific EOI
IRQ0_VECTOR equ 0x08        ; ICW2 of the master below: IRQ0-7 -> 08h-0Fh, as on a PC

PIT_CH0  equ 0x40
PIT_CTRL equ 0x43
PIT_CH0_MODE2 equ 0x34      ; counter 0, LSB then MSB, mode 2 (rate generator), binary

CMOS_INDEX equ 0x70
CMOS_DATA  equ 0x71
CMOS_SECONDS equ 0x00
CMOS_REG_A equ 0x0A
RTC_A_UIP  equ 0x80         ; update in progress: the time registers may be mid-change

MAX_WAIT_TICKS equ 64       ; a running RTC changes its seconds well within this

ticks equ 0x0500            ; word: IRQ0 count (free conventional memory above the BDA)

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld

    ; COM1: 115200 8N1 (divisor 1), as uart_spin does.
    mov dx, COM1 + LCR
    mov al, 0x80
    out dx, al
    mov dl, (COM1 + 0) & 0xFF
    mov al, 1
    out dx, al
    inc dx
    xor al, al
    out dx, al
    mov dl, (COM1 + LCR) & 0xFF
    mov al, 0x03
    out dx, al

    ; The IRQ0 vector: ours, whatever was there.
    mov word [IRQ0_VECTOR * 4], irq0
    mov word [IRQ0_VECTOR * 4 + 2], 0

    ; Both PICs, ICW1 (edge, cascade, ICW4) .. ICW4 (8086), then OCW1: only IRQ0 open.
    mov al, 0x11
    out PIC1_CMD, al
    out PIC2_CMD, al
    mov al, IRQ0_VECTOR
    out PIC1_DATA, al
    mov al, 0x70
    out PIC2_DATA, al
    mov al, 0x04            ; master: slave on IR2
    out PIC1_DATA, al
    mov al, 0x02            ; slave: identity 2
    out PIC2_DATA, al
    mov al, 0x01
    out PIC1_DATA, al
    out PIC2_DATA, al
    mov al, 0xFE
    out PIC1_DATA, al
    mov al, 0xFF
    out PIC2_DATA, al

    ; PIT counter 0: mode 2, count 0 = 65536.
    mov al, PIT_CH0_MODE2
    out PIT_CTRL, al
    xor al, al
    out PIT_CH0, al
    out PIT_CH0, al

    sti
    call wait_second        ; the first boundary: start counting from here
    jc fail
    mov word [ticks], 0
    call wait_second        ; the second boundary
    jc fail
    cli
    mov bp, [ticks]

    mov si, msg_head
    call print              ; (print uses AL)
    mov ax, bp
    mov bl, 10
    div bl                  ; al = tens, ah = units (the count is far below 100)
    add ax, '00'
    push ax
    call putc
    pop ax
    mov al, ah
    call putc
    mov si, msg_tail
    call print
    xor al, al
    jmp finish
fail:
    mov al, 1
finish:
    cli
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

; wait_second: sleep tick by tick until the RTC seconds register changes.  CF=1 if it did not
; change within MAX_WAIT_TICKS ticks.  Interrupts must be on.
wait_second:
    call read_seconds
    jc wait_second          ; UIP lasts about 2 ms (244 us + the 1984 us update): poll through it
    mov bl, al
    mov cx, MAX_WAIT_TICKS
.tick:
    hlt                     ; woken by IRQ0 (the only unmasked line)
    call read_seconds
    jc .next                ; update in progress: look again at the next tick
    cmp al, bl
    jne .changed
.next:
    loop .tick
    stc
    ret
.changed:
    clc
    ret

; read_seconds: AL = the RTC seconds, CF=0; or CF=1 while status A's UIP bit is set.
read_seconds:
    mov al, CMOS_REG_A
    out CMOS_INDEX, al
    in al, CMOS_DATA
    test al, RTC_A_UIP
    stc
    jnz .done
    mov al, CMOS_SECONDS
    out CMOS_INDEX, al
    in al, CMOS_DATA
    clc
.done:
    ret

irq0:
    inc word [cs:ticks]     ; the vector makes CS 0; DS is whatever the interrupted code had
    push ax
    mov al, EOI
    out PIC1_CMD, al
    pop ax
    iret

; print: the NUL-terminated string at ds:si to COM1.  putc: AL to COM1.  Both poll LSR.THRE.
print:
    lodsb
    test al, al
    jz .done
    call putc
    jmp print
.done:
    ret

%include "lib/putc.inc"

msg_head: db "pit_tick: ", 0
msg_tail: db " ticks in one RTC second", 10, 0

times 510 - ($ - $$) db 0
dw 0xAA55
