//! The vpcd stream (pcscd's vsmartcard driver to the card): the frame
//! `Decoder` fed the way `vpcd::serve` reads (never past the current
//! frame), `Request::parse`, and `vpcd::answer` against a real reader
//! and card.
//!
//! Input: one byte choosing the read size (1..=255 bytes, 0 = 4096), then
//! the stream pcscd would send.
//!
//! The decoder holds at most one frame; every reply fits a frame; an APDU
//! is answered with a status word, GetAtr with the ATR; and on a new
//! connection a power-on and a SELECT get their exact answers.
#![no_main]

use ccid::vpcd::{answer, encode_frame, Decoder, Request, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;
use vcac_fuzz::{card, Bytes, CardOptions, SELECT_CCC, SELECT_CCC_ANSWER};
use vreader::{ReaderHandle, ReaderSet};

fn serve_bytes(
    decoder: &mut Decoder,
    reader: &ReaderHandle,
    mut stream: &[u8],
    read_size: usize,
) -> Vec<Vec<u8>> {
    let mut replies = Vec::new();
    while !stream.is_empty() {
        let want = decoder.wanted().min(read_size);
        assert!(want >= 1);
        let (chunk, rest) = stream.split_at(want.min(stream.len()));
        stream = rest;
        decoder.extend(chunk);
        while let Some(payload) = decoder.next_frame() {
            assert!(payload.len() <= MAX_PAYLOAD);
            let request = Request::parse(&payload);
            match answer(reader, request).expect("the card is in the reader") {
                Some(reply) => {
                    match request {
                        Request::Apdu(_) => assert!(reply.len() >= 2),
                        Request::GetAtr => assert_eq!(reply, cac::DEFAULT_ATR),
                        other => panic!("a reply to {other:?}"),
                    }
                    let mut out = Vec::new();
                    encode_frame(&reply, &mut out).expect("every reply fits a frame");
                    replies.push(reply);
                }
                None => assert!(!matches!(request, Request::Apdu(_) | Request::GetAtr)),
            }
        }
        // Never more than one frame and its length buffered.
        assert!(decoder.wanted() <= MAX_PAYLOAD + 2);
    }
    replies
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let Some(size) = input.u8() else {
        return;
    };
    let read_size = if size == 0 { 4096 } else { usize::from(size) };
    let set = ReaderSet::new();
    let Ok(id) = set.add_reader("vpcd") else {
        return;
    };
    set.insert_card(id, card(CardOptions::default())).unwrap();
    let reader = set.handle(id).unwrap();
    let mut decoder = Decoder::new();
    serve_bytes(&mut decoder, &reader, input.rest(), read_size);

    // pcscd reconnects: a fresh connection, power on, SELECT.
    let mut decoder = Decoder::new();
    let mut stream = Vec::new();
    encode_frame(&[0x01], &mut stream).unwrap();
    encode_frame(&SELECT_CCC, &mut stream).unwrap();
    let replies = serve_bytes(&mut decoder, &reader, &stream, read_size);
    assert_eq!(replies, [SELECT_CCC_ANSWER.to_vec()]);
});
