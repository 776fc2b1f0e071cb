; pykvmm's BIOS: a 64 KiB image mapped read-only at 0xF0000 (segment F000) and aliased just below
; 4 GiB, so that the CPU's first fetch after reset (CS selector F000 with base 0xFFFF0000,
; IP FFF0; Intel SDM vol. 3, 9.1.4) lands on the jump at offset FFF0.
;
; It does what a PC/AT BIOS's POST does for the devices pykvmm has, and no more:
;   - the interrupt vector table (IVT) at 0000:0000 and the BIOS data area (BDA) at 0040:0000;
;   - both 8259A PICs in the AT layout (IRQ0-7 -> vectors 08h-0Fh, IRQ8-15 -> 70h-77h);
;   - 8254 PIT counter 0 at 18.2 Hz (count 0 = 65536 pulses of 1.193182 MHz), driving INT 08h;
;   - the RTC status registers to the PC setting (BCD, 24 hour);
;   - COM1 at 115200 8N1 with its FIFOs on and its receive interrupt (IRQ4) enabled;
; and provides these services, all in real mode:
;   INT 08h  IRQ0: count a tick in the BDA, call INT 1Ch, EOI;
;   INT 0Ch  IRQ4: move received COM1 bytes into the BDA keyboard ring, EOI;
;   INT 10h  AH=0Eh: teletype output, written to COM1 with polling (no video here);
;   INT 16h  AH=00h/10h read a key, AH=01h/11h peek (ZF=1: none), from COM1's receive side;
;   INT 1Ah  AH=00h read the tick count (CX:DX, AL = midnight flag), AH=01h set it;
;   every other vector: IRET; the other IRQs: EOI; spurious IRQ7/IRQ15 without a stray EOI.
; Then it enters the guest, which pykvmm has already placed at 0000:7C00, with the entry contract
; of a guest started without firmware: CS=DS=ES=FS=GS=SS=0, IP=SP=7C00h, general registers 0,
; RFLAGS=0002h (interrupts off: a guest that wants ticks executes STI itself).
;
; The image is read-only, so the BIOS keeps all its variables in the BDA (RAM).  Its stack while
; it runs is the guest's entry stack (0000:7C00, growing down into free conventional memory).

bits 16
org 0                       ; offsets are relative to segment F000 (the image's first byte)

BIOS_SEG    equ 0xF000
BDA_SEG     equ 0x0040
GUEST_ENTRY equ 0x7C00      ; the boot-sector address: IBM PC convention, and pykvmm's contract

; --- BIOS data area (offsets in segment 40h; IBM PC/AT Technical Reference, "BIOS data area") ---
BDA_COM1        equ 0x00    ; word: base port of COM1 (0 = no port)
BDA_EQUIPMENT   equ 0x10    ; word: equipment list; bits 11-9 = number of serial ports
BDA_MEMSIZE     equ 0x13    ; word: conventional memory in KiB
BDA_KBD_HEAD    equ 0x1A    ; word: offset (in 40h) of the oldest key in the ring
BDA_KBD_TAIL    equ 0x1C    ; word: offset of the next free slot
BDA_KBD_BUF     equ 0x1E    ; 16 words: the keyboard ring (scan code in the high byte)
BDA_KBD_BUF_END equ 0x3E
BDA_TICKS       equ 0x6C    ; dword: timer ticks since midnight
BDA_MIDNIGHT    equ 0x70    ; byte: nonzero once the tick count has passed midnight
BDA_KBD_START   equ 0x80    ; word: ring start (AT BIOS and later)
BDA_KBD_END     equ 0x82    ; word: ring end
EQUIP_ONE_SERIAL equ 1 << 9
CONV_MEM_KIB    equ 640
TICKS_PER_DAY   equ 0x1800B0 ; IBM BIOS: 1,573,040 ticks of 1193182/65536 Hz make a day

; --- 8259A PICs (Intel 8259A datasheet; AT wiring: slave on the master's IR2) -------------------
PIC1_CMD  equ 0x20
PIC1_DATA equ 0x21
PIC2_CMD  equ 0xA0
PIC2_DATA equ 0xA1
ICW1_INIT equ 0x11          ; ICW1: edge triggered, cascaded, ICW4 follows
ICW2_PIC1 equ 0x08          ; IRQ0-7 -> INT 08h-0Fh (IBM PC)
ICW2_PIC2 equ 0x70          ; IRQ8-15 -> INT 70h-77h (IBM PC/AT)
ICW3_PIC1 equ 0x04          ; master: a slave on IR2 (one bit per IR line)
ICW3_PIC2 equ 0x02          ; slave: its cascade identity is 2
ICW4_8086 equ 0x01          ; 8086 mode, normal (not automatic) EOI, not buffered
OCW2_EOI  equ 0x20          ; non-specific EOI: clear the highest-priority ISR bit
OCW3_READ_IRR equ 0x0A      ; the next read at A0=0 returns IRR (the state after ICW1)
OCW3_READ_ISR equ 0x0B      ; the next read at A0=0 returns ISR
IRQ_LEVEL7 equ 0x80         ; ISR bit of IR7: clear during a spurious interrupt (DS)
; Unmasked at guest entry: IRQ0 (the tick), IRQ2 (the cascade, so that a guest unmasking a slave
; line only has to touch the slave) and IRQ4 (COM1 receive, which wakes INT 16h from HLT).
PIC1_MASK equ ~((1 << 0) | (1 << 2) | (1 << 4)) & 0xFF
PIC2_MASK equ 0xFF

; --- 8254 PIT (Intel 8254 datasheet) -----------------------------------------------------------
PIT_CH0  equ 0x40
PIT_CTRL equ 0x43
PIT_CH0_MODE3 equ 0x36      ; counter 0, LSB then MSB, mode 3 (square wave), binary
; Count 0 means 65536 (DS "Counter operation"): 1193182 / 65536 = 18.2065 Hz.

; --- MC146818 RTC / CMOS ------------------------------------------------------------------------
CMOS_INDEX equ 0x70
CMOS_DATA  equ 0x71
CMOS_REG_A equ 0x0A
CMOS_REG_B equ 0x0B
CMOS_REG_C equ 0x0C
RTC_A_PC   equ 0x26         ; 32.768 kHz time base, 1024 Hz periodic rate: the PC BIOS setting
RTC_B_PC   equ 0x02         ; 24-hour, BCD, no interrupts: the PC BIOS setting

; --- 16550A UART (PC16550D datasheet) -----------------------------------------------------------
COM1     equ 0x3F8
UART_RBR equ 0              ; receive buffer (read, DLAB=0)
UART_THR equ 0              ; transmit holding (write, DLAB=0)
UART_DLL equ 0              ; divisor latch low (DLAB=1)
UART_DLM equ 1              ; divisor latch high (DLAB=1)
UART_IER equ 1
UART_FCR equ 2
UART_LCR equ 3
UART_MCR equ 4
UART_LSR equ 5
LCR_DLAB equ 0x80
LCR_8N1  equ 0x03           ; 8 data bits, no parity, 1 stop bit
DIVISOR_115200 equ 1        ; 1.8432 MHz / (16 * 115200)
FCR_ENABLE_CLEAR equ 0x07   ; enable the FIFOs and clear both (trigger level 1 byte)
MCR_DTR_RTS_OUT2 equ 0x0B   ; OUT2 gates the UART's interrupt onto IRQ4 on a PC
IER_RX   equ 0x01           ; interrupt on received data (and character timeout)
LSR_DR   equ 0x01           ; receiver data ready
LSR_THRE equ 0x20           ; transmit holding register empty

; --- pykvmm ports -------------------------------------------------------------------------------
POST_PORT equ 0x80          ; POST checkpoint codes, recorded by pykvmm's stats
POST_START     equ 0x01
POST_IVT       equ 0x02
POST_PIC       equ 0x03
POST_PIT       equ 0x04
POST_RTC       equ 0x05
POST_UART      equ 0x06
POST_BOOT      equ 0x07

FLAGS_ZF equ 0x0040
FLAGS_CF equ 0x0001
ENTRY_FLAGS equ 0x0002      ; RFLAGS bit 1 always reads 1; IF=0

%macro post 1
    mov al, %1
    out POST_PORT, al
%endmacro

; ================================================================================================
; POST
; ================================================================================================
post_start:
    cli
    cld
    xor ax, ax
    mov ss, ax
    mov sp, GUEST_ENTRY
    post POST_START

    ; --- the IVT: every vector IRETs unless a service below claims it ----------------------------
    xor ax, ax
    mov es, ax
    xor di, di
    mov cx, 256
.ivt:
    mov ax, default_iret
    stosw
    mov ax, BIOS_SEG
    stosw
    loop .ivt
    mov si, vector_table
.claim:
    cs lodsw                ; vector number, 0FFFFh ends the table
    cmp ax, 0xFFFF
    je .claimed
    mov di, ax
    shl di, 2
    cs lodsw
    mov [es:di], ax         ; the handler's offset; the segment is already F000
    jmp .claim
.claimed:
    post POST_IVT

    ; --- the BDA ---------------------------------------------------------------------------------
    mov ax, BDA_SEG
    mov ds, ax
    mov es, ax
    xor di, di
    mov cx, 0x100 / 2       ; the BDA proper is 256 bytes
    xor ax, ax
    rep stosw
    mov word [BDA_COM1], COM1
    mov word [BDA_EQUIPMENT], EQUIP_ONE_SERIAL
    mov word [BDA_MEMSIZE], CONV_MEM_KIB
    mov word [BDA_KBD_HEAD], BDA_KBD_BUF
    mov word [BDA_KBD_TAIL], BDA_KBD_BUF
    mov word [BDA_KBD_START], BDA_KBD_BUF
    mov word [BDA_KBD_END], BDA_KBD_BUF_END

    ; --- PICs: ICW1..ICW4 on each chip, in the order the 8259A datasheet requires ----------------
    mov al, ICW1_INIT
    out PIC1_CMD, al
    out PIC2_CMD, al
    mov al, ICW2_PIC1
    out PIC1_DATA, al
    mov al, ICW2_PIC2
    out PIC2_DATA, al
    mov al, ICW3_PIC1
    out PIC1_DATA, al
    mov al, ICW3_PIC2
    out PIC2_DATA, al
    mov al, ICW4_8086
    out PIC1_DATA, al
    out PIC2_DATA, al
    ; OCW1: everything masked while the rest is set up.
    mov al, 0xFF
    out PIC1_DATA, al
    out PIC2_DATA, al
    post POST_PIC

    ; --- PIT counter 0: mode 3 with count 0 (65536), the PC's 18.2 Hz tick ----------------------
    mov al, PIT_CH0_MODE3
    out PIT_CTRL, al
    xor al, al
    out PIT_CH0, al         ; LSB
    out PIT_CH0, al         ; MSB
    post POST_PIT

    ; --- RTC: the PC's register A/B setting; reading C clears any stale interrupt flags --------
    mov al, CMOS_REG_A
    out CMOS_INDEX, al
    mov al, RTC_A_PC
    out CMOS_DATA, al
    mov al, CMOS_REG_B
    out CMOS_INDEX, al
    mov al, RTC_B_PC
    out CMOS_DATA, al
    mov al, CMOS_REG_C
    out CMOS_INDEX, al
    in al, CMOS_DATA
    post POST_RTC

    ; --- COM1: 115200 8N1, FIFOs on, receive interrupt through OUT2 onto IRQ4 -----------------
    mov dx, COM1 + UART_LCR
    mov al, LCR_DLAB
    out dx, al
    mov dl, (COM1 + UART_DLL) & 0xFF
    mov al, DIVISOR_115200
    out dx, al
    inc dx                  ; DLM
    xor al, al
    out dx, al
    mov dl, (COM1 + UART_LCR) & 0xFF
    mov al, LCR_8N1
    out dx, al
    mov dl, (COM1 + UART_FCR) & 0xFF
    mov al, FCR_ENABLE_CLEAR
    out dx, al
    mov dl, (COM1 + UART_MCR) & 0xFF
    mov al, MCR_DTR_RTS_OUT2
    out dx, al
    mov dl, (COM1 + UART_IER) & 0xFF
    mov al, IER_RX
    out dx, al
    post POST_UART

    ; --- unmask the lines the services use ------------------------------------------------------
    mov al, PIC1_MASK
    out PIC1_DATA, al
    mov al, PIC2_MASK
    out PIC2_DATA, al

    ; --- enter the guest: the same registers as a guest started without firmware -------------
    post POST_BOOT
    xor eax, eax
    mov ebx, eax
    mov ecx, eax
    mov edx, eax
    mov esi, eax
    mov edi, eax
    mov ebp, eax
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, GUEST_ENTRY
    push word ENTRY_FLAGS   ; POPF sets every flag, so the guest sees exactly 0002h ...
    popf                    ; ... and SP is back at 7C00h (the word went below the guest)
    jmp 0x0000:GUEST_ENTRY

; ================================================================================================
; Interrupt handlers.  Each preserves every register it does not return a value in.
; ================================================================================================

default_iret:
    iret

; INT 08h, IRQ0: the BIOS tick (IBM PC BIOS convention: count, call the user hook INT 1Ch, EOI).
int08_timer:
    push ax
    push ds
    mov ax, BDA_SEG
    mov ds, ax
    inc dword [BDA_TICKS]
    cmp dword [BDA_TICKS], TICKS_PER_DAY
    jb .same_day
    mov dword [BDA_TICKS], 0
    mov byte [BDA_MIDNIGHT], 1
.same_day:
    int 0x1C
    mov al, OCW2_EOI
    out PIC1_CMD, al
    pop ds
    pop ax
    iret

; INT 0Ch, IRQ4: COM1 has received data.  Draining the receiver into the ring lets the UART drop
; its interrupt line, so the next byte is a new edge for the edge-triggered PIC.
int0c_com1:
    push ax
    push bx
    push cx
    push dx
    push ds
    mov ax, BDA_SEG
    mov ds, ax
    call kbd_fill
    mov al, OCW2_EOI
    out PIC1_CMD, al
    pop ds
    pop dx
    pop cx
    pop bx
    pop ax
    iret

; IRQ1-3, 5, 6 (vectors 09h-0Bh, 0Dh, 0Eh): nobody asked for them; acknowledge and return.
irq_master_default:
    push ax
    mov al, OCW2_EOI
    out PIC1_CMD, al
    pop ax
    iret

; IRQ7 (vector 0Fh).  8259A datasheet: when a request goes away before the acknowledge, the chip
; answers with IR7's vector but sets no ISR bit.  An EOI then would end some other, genuine
; interrupt, so EOI only when ISR bit 7 says IRQ7 really is in service.
irq7:
    push ax
    mov al, OCW3_READ_ISR
    out PIC1_CMD, al
    in al, PIC1_CMD
    mov ah, al
    mov al, OCW3_READ_IRR   ; leave status reads as they were after ICW1
    out PIC1_CMD, al
    test ah, IRQ_LEVEL7
    jz .spurious
    mov al, OCW2_EOI
    out PIC1_CMD, al
.spurious:
    pop ax
    iret

; IRQ8-14 (vectors 70h-76h): EOI the slave, then the master, whose IR2 (the cascade) is in service.
irq_slave_default:
    push ax
    mov al, OCW2_EOI
    out PIC2_CMD, al
    out PIC1_CMD, al
    pop ax
    iret

; IRQ15 (vector 77h): a spurious interrupt of the slave sets no slave ISR bit, but the master did
; grant IR2, so the master still needs its EOI; the slave gets one only for a genuine IRQ15.
irq15:
    push ax
    mov al, OCW3_READ_ISR
    out PIC2_CMD, al
    in al, PIC2_CMD
    mov ah, al
    mov al, OCW3_READ_IRR
    out PIC2_CMD, al
    mov al, OCW2_EOI
    test ah, IRQ_LEVEL7
    jz .spurious
    out PIC2_CMD, al
.spurious:
    out PIC1_CMD, al
    pop ax
    iret

; INT 10h, video.  Only AH=0Eh (teletype output of AL) exists; with no display it goes to COM1.
; Every register is preserved, as the IBM BIOS does for this function.
int10_video:
    cmp ah, 0x0E
    jne .done
    push ax
    push dx
    push ds
    push ax
    mov ax, BDA_SEG
    mov ds, ax
    mov dx, [BDA_COM1]
    pop ax
    test dx, dx
    jz .out                 ; no COM1: the character is dropped
    add dx, UART_LSR
    mov ah, al
.wait:
    in al, dx               ; poll LSR.THRE: THR may be written only when it is empty
    test al, LSR_THRE
    jz .wait
    sub dx, UART_LSR - UART_THR
    mov al, ah
    out dx, al
.out:
    pop ds
    pop dx
    pop ax
.done:
    iret

; INT 16h, keyboard.  The keyboard is COM1's receive side: AL = the byte, AH = 0 (no scan codes).
;   AH=00h/10h: wait for a key and remove it; AH=01h/11h: ZF=0 and AX = the next key, or ZF=1.
; Keys wait in the BDA ring as on a PC; INT 0Ch fills it, and so does every call here, so input
; still arrives when a guest has masked IRQ4 or runs with interrupts off.
int16_keyboard:
    push bp
    mov bp, sp              ; [bp+6]: the caller's FLAGS
    push bx
    push cx
    push dx
    push ds
    mov bx, BDA_SEG
    mov ds, bx
    mov bl, ah
    and bl, 0xEF            ; 10h/11h are the enhanced-keyboard twins of 00h/01h
    cmp bl, 0x01
    je .peek
    cmp bl, 0x00
    jne .return
.read:
    cli                     ; the ring is shared with INT 0Ch
    call kbd_fill
    mov bx, [BDA_KBD_HEAD]
    cmp bx, [BDA_KBD_TAIL]
    jne .take
    ; Nothing yet: sleep until an interrupt (the 18.2 Hz tick or IRQ4).  STI's one-instruction
    ; shadow makes STI;HLT atomic, so an IRQ arriving after the check still ends the HLT.  If the
    ; guest has masked both lines, no interrupt will come: poll instead.
    in al, PIC1_DATA
    and al, (1 << 0) | (1 << 4)
    cmp al, (1 << 0) | (1 << 4)
    je .read
    sti
    hlt
    jmp .read
.take:
    mov ax, [bx]
    add bx, 2
    cmp bx, BDA_KBD_BUF_END
    jb .stored
    mov bx, BDA_KBD_BUF
.stored:
    mov [BDA_KBD_HEAD], bx
    jmp .return
.peek:
    cli
    call kbd_fill
    mov bx, [BDA_KBD_HEAD]
    cmp bx, [BDA_KBD_TAIL]
    je .empty
    mov ax, [bx]
    and word [bp + 6], ~FLAGS_ZF & 0xFFFF
    jmp .return
.empty:
    or word [bp + 6], FLAGS_ZF
.return:
    pop ds
    pop dx
    pop cx
    pop bx
    pop bp
    iret

; kbd_fill: move every byte waiting in COM1's receiver into the ring, until the ring is full
; (the rest stays in the UART's FIFO, where overruns are the UART's business).
; In: DS = BDA, interrupts off.  Clobbers AX, BX, CX, DX.
kbd_fill:
    mov dx, [BDA_COM1]
    test dx, dx
    jz .done
    add dx, UART_LSR
.next:
    in al, dx
    test al, LSR_DR
    jz .done
    mov bx, [BDA_KBD_TAIL]
    lea cx, [bx + 2]
    cmp cx, BDA_KBD_BUF_END
    jb .nowrap
    mov cx, BDA_KBD_BUF
.nowrap:
    cmp cx, [BDA_KBD_HEAD]
    je .done                ; full: one slot always stays free so that head == tail means empty
    sub dx, UART_LSR - UART_RBR
    in al, dx
    add dx, UART_LSR - UART_RBR
    xor ah, ah
    mov [bx], ax
    mov [BDA_KBD_TAIL], cx
    jmp .next
.done:
    ret

; INT 1Ah, time of day.  AH=00h: CX:DX = ticks since midnight, AL = the midnight flag, which the
; read clears (IBM BIOS).  AH=01h: set the count from CX:DX.  Other functions: CF=1.
int1a_time:
    push bp
    mov bp, sp              ; [bp+6]: the caller's FLAGS
    push ds
    push ax
    mov ax, BDA_SEG
    mov ds, ax
    pop ax
    cli                     ; the count is a dword that INT 08h updates
    cmp ah, 0x00
    je .read
    cmp ah, 0x01
    je .set
    or word [bp + 6], FLAGS_CF
    jmp .return
.read:
    mov dx, [BDA_TICKS]
    mov cx, [BDA_TICKS + 2]
    mov al, [BDA_MIDNIGHT]
    mov byte [BDA_MIDNIGHT], 0
    jmp .ok
.set:
    mov [BDA_TICKS], dx
    mov [BDA_TICKS + 2], cx
    mov byte [BDA_MIDNIGHT], 0
.ok:
    and word [bp + 6], ~FLAGS_CF & 0xFFFF
.return:
    pop ds
    pop bp
    iret

; Vector number, handler offset; the POST loop points these vectors at F000:offset.
vector_table:
    dw 0x08, int08_timer
    dw 0x09, irq_master_default
    dw 0x0A, irq_master_default
    dw 0x0B, irq_master_default
    dw 0x0C, int0c_com1
    dw 0x0D, irq_master_default
    dw 0x0E, irq_master_default
    dw 0x0F, irq7
    dw 0x10, int10_video
    dw 0x16, int16_keyboard
    dw 0x1A, int1a_time
    dw 0x70, irq_slave_default
    dw 0x71, irq_slave_default
    dw 0x72, irq_slave_default
    dw 0x73, irq_slave_default
    dw 0x74, irq_slave_default
    dw 0x75, irq_slave_default
    dw 0x76, irq_slave_default
    dw 0x77, irq15
    dw 0xFFFF

; ================================================================================================
; The top 16 bytes: the reset vector, the BIOS date and the model byte (IBM PC/AT convention).
; ================================================================================================
    times 0xFFF0 - ($ - $$) db 0xFF
reset_vector:               ; F000:FFF0, where the CPU starts
    jmp BIOS_SEG:post_start
    db "11/25/26"           ; F000:FFF5: the BIOS date, mm/dd/yy
    db 0
    db 0xFC                 ; F000:FFFE: model byte, FCh = PC/AT
    db 0
