; pic_init: initialises both 8259A PICs with full ICW1..ICW4 sequences, then drives them through
; OCW1 (masks), OCW2 (EOIs), OCW3 (IRR/ISR reads and the poll command) and checks every value
; read back against the Intel 8259A datasheet (order number 231468, "DS").  Interrupts stay off
; throughout (IF=0): requests are only latched, polled and acknowledged by the guest itself.
;
; Needs no firmware (it programs every device it uses); runs the same after pykvmm's BIOS.
; Request sources: PIT counter 0 (IRQ0, master IR0) and the RTC's periodic interrupt (IRQ8, the
; slave's IR0, cascaded to the master's IR2).  Both are quietened first, so that the idle values
; are exact: counter 0 gets a mode-0 control word with no count (DS 8254: OUT goes low after a
; mode-0 control word and stays low until a count is written and runs out), the RTC gets register
; B with no interrupt enables, and COM1's interrupts are disabled.
;
; Output (COM1): "pic_init: ok\n", or "pic_init: check NN read XX\n" (XX in hex; the expected
; value of each check is in the list below).
; Status (port 0xF4): 0 when every check matches, else NN, the number of the first mismatch:
;   1/2   master/slave IMR after ICW1..ICW4 is 00 (DS ICW1: "the interrupt mask register is cleared")
;   3/4   master/slave read at A0=0 right after initialisation is IRR (DS ICW1: "status read is set
;         to IRR"), and no request is pending: 00
;   5/6   OCW1 masks read back (A5h master, 5Ah slave)
;   7/8   master/slave ISR (OCW3 0Bh) is 00: nothing has been acknowledged
;   9     IRQ0 rises while masked: the master's IRR latches it anyway (DS: IMR acts after IRR): 01
;   10    ... and nothing enters service: master ISR 00
;   11    unmask IR0, OCW3 poll: the poll word is 80h | level 0 (DS "The Poll Command")
;   12    the poll acknowledged it: master ISR 01
;   13    ... and reset its IRR bit (edge triggered; OUT0 staying high is no new edge): IRR 00
;   14    non-specific EOI (OCW2 20h) clears ISR bit 0: ISR 00
;   15    a poll with no request pending has bit 7 (I) clear
;   16    the RTC periodic flag raises IRQ8: slave IRR 01
;   17    the slave's INT output is the master's IR2: master IRR 04 (masked there, still latched)
;   18    slave poll: 80h | level 0
;   19    slave ISR 01 after the poll
;   20    specific EOI for level 0 (OCW2 60h) on the slave: slave ISR 00
;   30/31 the PIT's OUT0 / the RTC's IRQ8 never rose (a device problem, not a PIC one)

bits 16
org 0x7C00

COM1     equ 0x3F8
LCR      equ 3
LSR      equ 5
IER      equ 1
LSR_THRE equ 0x20
DEBUG_EXIT equ 0xF4

PIC1_CMD  equ 0x20
PIC1_DATA equ 0x21
PIC2_CMD  equ 0xA0
PIC2_DATA equ 0xA1
ICW1      equ 0x11          ; edge triggered, cascade, ICW4 needed
ICW4      equ 0x01          ; 8086 mode, normal EOI
OCW2_EOI  equ 0x20          ; non-specific EOI
OCW2_SEOI0 equ 0x60         ; specific EOI, level 0
OCW3_IRR  equ 0x0A          ; RR=1 RIS=0: read IRR
OCW3_ISR  equ 0x0B          ; RR=1 RIS=1: read ISR
OCW3_POLL equ 0x0C          ; P=1: the next read is the poll word
POLL_INT  equ 0x80          ; poll word bit 7: a request was pending and is now acknowledged

PIT_CH0  equ 0x40
PIT_CTRL equ 0x43
PIT_CH0_MODE0_NOCOUNT equ 0x30  ; counter 0, LSB+MSB, mode 0: OUT low until a count runs out
PIT_CH0_MODE0_LSB     equ 0x10  ; counter 0, LSB only, mode 0
PIT_READBACK_STATUS0  equ 0xE2  ; read-back: status (not count) of counter 0
PIT_STATUS_OUT        equ 0x80  ; status bit 7: the OUT pin

CMOS_INDEX equ 0x70
CMOS_DATA  equ 0x71
RTC_A      equ 0x0A
RTC_B      equ 0x0B
RTC_C      equ 0x0C
RTC_A_1024HZ equ 0x26       ; 32.768 kHz base, rate 6: 1024 Hz periodic interrupt
RTC_B_QUIET  equ 0x02       ; 24 hour, BCD, no interrupts
RTC_B_PIE    equ 0x42       ; ... plus the periodic interrupt enable

; Read a PIC status register: %1 = command port, %2 = OCW3.
%macro status 2
    mov al, %2
    out %1, al
    in al, %1
%endmacro

; AL must equal %1, else check number %2 fails.
%macro expect 2
    mov bx, (%2 << 8) | %1
    call check
%endmacro

; Read port %1 (after writing OCW3 %2 to it, unless %2 is 0); the value must be %3, else check
; number %4 fails.  The four bytes follow the call, which keeps 20 checks inside a boot sector.
%macro read_expect 4
    call read_check
    db %1, %2, %3, %4
%endmacro

%macro cmos_write 2
    mov al, %1
    out CMOS_INDEX, al
    mov al, %2
    out CMOS_DATA, al
%endmacro

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    cld

    ; COM1: 115200 8N1, interrupts off.
    mov dx, COM1 + LCR
    mov al, 0x80
    out dx, al
    mov dl, COM1 & 0xFF
    mov al, 1
    out dx, al
    inc dx                  ; DLM
    xor al, al
    out dx, al
    mov dl, (COM1 + LCR) & 0xFF
    mov al, 0x03
    out dx, al
    mov dl, (COM1 + IER) & 0xFF
    xor al, al
    out dx, al

    ; Quiet the request sources (see the header).
    mov al, PIT_CH0_MODE0_NOCOUNT
    out PIT_CTRL, al
    cmos_write RTC_B, RTC_B_QUIET
    mov al, RTC_C
    out CMOS_INDEX, al
    in al, CMOS_DATA        ; reading C clears the flags, so IRQ8 is low

    ; ICW1..ICW4, master then slave (AT layout: 08h and 70h, slave on IR2).
    mov al, ICW1
    out PIC1_CMD, al
    mov al, 0x08
    out PIC1_DATA, al
    mov al, 0x04
    out PIC1_DATA, al
    mov al, ICW4
    out PIC1_DATA, al
    mov al, ICW1
    out PIC2_CMD, al
    mov al, 0x70
    out PIC2_DATA, al
    mov al, 0x02
    out PIC2_DATA, al
    mov al, ICW4
    out PIC2_DATA, al

    read_expect PIC1_DATA, 0, 0x00, 1
    read_expect PIC2_DATA, 0, 0x00, 2
    read_expect PIC1_CMD, 0, 0x00, 3
    read_expect PIC2_CMD, 0, 0x00, 4

    mov al, 0xA5
    out PIC1_DATA, al
    mov al, 0x5A
    out PIC2_DATA, al
    read_expect PIC1_DATA, 0, 0xA5, 5
    read_expect PIC2_DATA, 0, 0x5A, 6
    read_expect PIC1_CMD, OCW3_ISR, 0x00, 7
    read_expect PIC2_CMD, OCW3_ISR, 0x00, 8

    ; IRQ0: all master lines masked, then counter 0 counts 2 in mode 0 and OUT0 rises.
    mov al, 0xFF
    out PIC1_DATA, al
    mov al, PIT_CH0_MODE0_LSB
    out PIT_CTRL, al
    mov al, 2
    out PIT_CH0, al
    mov cx, 0xFFFF
.out0:
    mov al, PIT_READBACK_STATUS0
    out PIT_CTRL, al
    in al, PIT_CH0
    test al, PIT_STATUS_OUT
    jnz .out0_high
    loop .out0
    mov bx, 30 << 8
    jmp fail
.out0_high:
    read_expect PIC1_CMD, OCW3_IRR, 0x01, 9
    read_expect PIC1_CMD, OCW3_ISR, 0x00, 10
    mov al, 0xFE
    out PIC1_DATA, al
    read_expect PIC1_CMD, OCW3_POLL, POLL_INT | 0, 11
    read_expect PIC1_CMD, OCW3_ISR, 0x01, 12
    read_expect PIC1_CMD, OCW3_IRR, 0x00, 13
    mov al, OCW2_EOI
    out PIC1_CMD, al
    read_expect PIC1_CMD, OCW3_ISR, 0x00, 14
    status PIC1_CMD, OCW3_POLL
    and al, POLL_INT        ; DS: with I=0 the level bits mean nothing
    expect 0x00, 15

    ; IRQ8: the master fully masked (its IR2 still latches), the slave open on IR0 only.
    mov al, 0xFF
    out PIC1_DATA, al
    mov al, 0xFE
    out PIC2_DATA, al
    cmos_write RTC_A, RTC_A_1024HZ
    cmos_write RTC_B, RTC_B_PIE
    mov cx, 0xFFFF
.irq8:
    status PIC2_CMD, OCW3_IRR
    test al, al
    jnz .irq8_high
    loop .irq8
    mov bx, 31 << 8
    jmp fail
.irq8_high:
    expect 0x01, 16
    read_expect PIC1_CMD, OCW3_IRR, 0x04, 17
    read_expect PIC2_CMD, OCW3_POLL, POLL_INT | 0, 18
    read_expect PIC2_CMD, OCW3_ISR, 0x01, 19
    mov al, OCW2_SEOI0
    out PIC2_CMD, al
    read_expect PIC2_CMD, OCW3_ISR, 0x00, 20
    cmos_write RTC_B, RTC_B_QUIET

    mov si, msg_ok
    call print
    xor al, al
    jmp finish

read_check:
    pop si                  ; the four bytes after the call
    lodsw
    xchg ax, dx             ; dl = port, dh = OCW3
    lodsw
    xchg ax, bx             ; bl = expected, bh = check number
    push si                 ; return past them
    mov al, dh
    mov dh, 0
    test al, al
    jz .read
    out dx, al
.read:
    in al, dx
; check: AL (read) against BL (expected); on a mismatch report check BH and stop.
check:
    cmp al, bl
    jne fail
    ret
fail:
    mov cl, al              ; the value read
    mov si, msg_check
    call print
    mov al, bh
    aam                     ; ah = tens, al = units
    add ax, '00'
    xchg al, ah
    call putc
    xchg al, ah
    call putc
    mov si, msg_read
    call print
    mov al, cl
    call puthex
    mov al, 10
    call putc
    mov al, bh
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt

; puthex: AL as two hex digits.
puthex:
    push ax
    shr al, 4
    call .nibble
    pop ax
.nibble:
    and al, 0x0F
    add al, '0'
    cmp al, '9'
    jbe putc
    add al, 'A' - '9' - 1
%include "lib/putc.inc"

print:
    lodsb
    test al, al
    jz .done
    call putc
    jmp print
.done:
    ret

msg_ok:       db "pic_init: ok", 10, 0
msg_check:    db "pic_init: check ", 0
msg_read:     db " read ", 0

times 510 - ($ - $$) db 0
dw 0xAA55
