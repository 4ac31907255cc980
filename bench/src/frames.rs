//! Test frames for the engine runs: TCP segments with correct checksums,
//! built without allocation once the buffer exists.

/// One Ethernet/IPv4/TCP frame's addresses and ports.
#[derive(Debug, Clone, Copy)]
pub struct Tcp4 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (0x02 SYN, 0x10 ACK, …).
    pub flags: u8,
}

/// Bytes of the frame [`Tcp4::write`] makes: 14 + 20 + 20 + 10 of payload,
/// the 64-byte frame of packet-rate benchmarks (without the FCS).
pub const TCP4_LEN: usize = 64;

fn sum(data: &[u8], mut acc: u32) -> u32 {
    for pair in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

impl Tcp4 {
    /// The frame, checksums included.
    pub fn frame(&self) -> Vec<u8> {
        let mut f = vec![0u8; TCP4_LEN];
        self.write(&mut f);
        f
    }

    /// Writes the frame into `f` (at least [`TCP4_LEN`] bytes).
    pub fn write(&self, f: &mut [u8]) {
        f[0..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip.copy_from_slice(&[
            0x45, 0, 0, 50, 0, 0, 0x40, 0, self.ttl, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        ip[12..16].copy_from_slice(&self.src);
        ip[16..20].copy_from_slice(&self.dst);
        let c = !fold(sum(ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let tcp = &mut f[34..64];
        tcp.fill(0);
        tcp[0..2].copy_from_slice(&self.sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&self.dport.to_be_bytes());
        tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = self.flags;
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        let mut acc = sum(&self.src, 0);
        acc = sum(&self.dst, acc);
        acc += 6 + 30;
        acc = sum(tcp, acc);
        let c = !fold(acc);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let f = Tcp4 {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            ttl: 64,
            sport: 1234,
            dport: 80,
            flags: 0x02,
        }
        .frame();
        assert_eq!(fold(sum(&f[14..34], 0)), 0xffff);
        let mut acc = sum(&f[26..34], 0) + 6 + 30;
        acc = sum(&f[34..64], acc);
        assert_eq!(fold(acc), 0xffff);
    }
}
