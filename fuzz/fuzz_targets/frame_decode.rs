//! Feeds arbitrary bytes to the frame decoder, whole and in random splits, and
//! checks that every decoded frame re-encodes to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use courser_frame::{decode, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_payload: 1 << 20 };
    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    while let Ok(Some(frame)) = decode(&mut buf, &limits) {
        let encoded = frame.to_bytes();
        // The reserved byte 11 is not kept; everything else must round-trip.
        let original = &data[offset..offset + encoded.len()];
        assert_eq!(&encoded[..11], &original[..11]);
        assert_eq!(&encoded[12..], &original[12..]);
        offset += encoded.len();
    }
    // Byte-at-a-time feeding must give the same frames as one buffer.
    let mut whole = BytesMut::from(data);
    let mut trickle = BytesMut::new();
    for &b in data {
        trickle.extend_from_slice(&[b]);
        match decode(&mut trickle, &limits) {
            Ok(Some(f)) => assert_eq!(Ok(Some(f)), decode(&mut whole, &limits)),
            Ok(None) => {}
            Err(_) => break,
        }
    }
});
