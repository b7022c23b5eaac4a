//! Any string through the address parser: never a panic, and whatever
//! parses prints back to something that parses to the same address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_link::Address;

fuzz_target!(|input: &str| {
    if let Ok(addr) = input.parse::<Address>() {
        let printed = addr.to_string();
        let again: Address = printed.parse().expect("printed address parses");
        assert_eq!(again, addr);
    }
});
