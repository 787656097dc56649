import pytest
import torch

from janusdna import decode, encode, reverse_complement


def test_encode_uppercases_and_maps_iupac_to_n():
    assert encode("ACGTacgtN").tolist() == [7, 8, 9, 10, 7, 8, 9, 10, 11]
    assert encode("RYSWKMBDHVnry").tolist() == [11] * 13


def test_encode_rejects_non_dna_with_position():
    with pytest.raises(ValueError, match=r"'X' at position 3"):
        encode("ACXT")


def test_decode_and_reverse_complement():
    ids = encode("AACGTN")
    assert decode(ids) == "AACGTN"
    assert decode(reverse_complement(ids)) == "NACGTT"
    assert torch.equal(reverse_complement(reverse_complement(ids)), ids)
    specials = torch.tensor([0, 4, 7])
    assert reverse_complement(specials).tolist() == [10, 4, 0]
