; op32: 32-bit operands and addressing in real mode (operand-size 66h and address-size 67h
; prefixes) between IO instructions.  Each of 12 passes has four IOs to COM1's scratch register
; (0x3FF) with 32-bit work between them: a xorshift32 step, IMUL r32, r/m32, imm32, an ADD from
; a table with a scaled 32-bit index ([table + ECX*4]), ROR by CL, SHLD, a 32x32->64 MUL, a
; 64/32 DIV, LEA with a 32-bit scaled index and stores through [BUF + ESI*4].
;
; Per pass i (0-11), all 32-bit, from x = 12345678h, acc = 0:
;   x ^= x << 13; x ^= x >> 17; x ^= x << 5
;   q = x * 01000193h (low 32 bits) + table[i];  q = ror(q, i);  q = (q << 7) | (x >> 25)
;   (hi, lo) = x * 9E3779B9h;  acc = (acc + hi) ^ lo;  acc += q mod 1000003
;   IN AL from the scratch register: it holds x's low byte, so x is unchanged
; with table[i] = 0F1E2D3Ch + i * 10204081h.
; Output (COM1): for each pass "XXXXXXXX XXXXXXXX XXXXXXXX\n" (x, q, acc), then "op32: ok\n".
; Status (port 0xF4): 0, or 1 if the high half of EAX was lost by the IN (EAX must still be x).

bits 16
org 0x7C00

%include "lib/boot.inc"

start:
    BOOT_COM1

PASSES     equ 12
X0         equ 0x12345678
FNV_PRIME  equ 0x01000193
GOLDEN     equ 0x9E3779B9
MODULUS    equ 1000003
TABLE0     equ 0x0F1E2D3C
TABLE_STEP equ 0x10204081
BUF        equ 0x0600   ; three dwords per pass, in free conventional memory

    mov dx, COM1 + SCR
    mov eax, X0
    mov ebx, GOLDEN
    xor ecx, ecx
    xor ebp, ebp
.pass:
    out dx, al              ; IO
    mov esi, eax
    shl esi, 13
    xor eax, esi
    mov esi, eax
    shr esi, 17
    xor eax, esi
    mov esi, eax
    shl esi, 5
    xor eax, esi
    out dx, al              ; IO
    imul edi, eax, FNV_PRIME
    add edi, [table + ecx*4]
    ror edi, cl
    shld edi, eax, 7
    out dx, al              ; IO
    mov esi, eax
    mul ebx
    add ebp, edx
    xor ebp, eax
    mov eax, edi
    xor edx, edx
    div dword [modulus]
    add ebp, edx
    mov eax, esi
    mov dx, COM1 + SCR
    in al, dx               ; IO
    cmp eax, esi
    mov al, 1
    jne finish
    mov eax, esi
    lea esi, [ecx + ecx*2]
    mov [BUF + esi*4], eax
    mov [BUF + 4 + esi*4], edi
    mov [BUF + 8 + esi*4], ebp
    inc ecx
    cmp ecx, PASSES
    jb .pass

    mov si, BUF
.line:
    mov cx, 3
.dword:
    lodsd
    ror eax, 16
    call puthex16
    ror eax, 16
    call puthex16
    mov al, ' '
    cmp cx, 1
    jne .sep
    mov al, 10
.sep:
    call putc
    loop .dword
    cmp si, BUF + 12 * PASSES
    jb .line
    mov si, msg_ok
    call print
    xor al, al
finish:
    out DEBUG_EXIT, al
.halt:
    hlt
    jmp .halt


%include "lib/serial.inc"

align 4
modulus:  dd MODULUS
table:
%assign i 0
%rep PASSES
          dd (TABLE0 + i * TABLE_STEP) & 0xFFFFFFFF
%assign i i + 1
%endrep
msg_ok:   db "op32: ok", 10, 0

times 510 - ($ - $$) db 0
dw 0xAA55
