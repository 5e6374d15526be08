"""The __init__ and _values code of the package's record classes (connwatch.record), by
shape: compiled with the package, not at every start. Generated (record.shapes_source): see
tests/unit/test_record_shapes.py."""
# ruff: noqa
# mypy: ignore-errors

def init_1_0(self, _p0):
    _set0(self, _factory0() if _p0 is _missing else _p0)


def init_2(self, _p0, _p1):
    _set0(self, _p0)
    _set1(self, _p1)


def init_3(self, _p0, _p1, _p2):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)


def init_3_2(self, _p0, _p1, _p2):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _factory2() if _p2 is _missing else _p2)


def init_4(self, _p0, _p1, _p2, _p3):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)


def init_5(self, _p0, _p1, _p2, _p3, _p4):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)


def init_5_3(self, _p0, _p1, _p2, _p3, _p4):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _factory3() if _p3 is _missing else _p3)
    _set4(self, _p4)


def init_6(self, _p0, _p1, _p2, _p3, _p4, _p5):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)


def init_6_3(self, _p0, _p1, _p2, _p3, _p4, _p5):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _factory3() if _p3 is _missing else _p3)
    _set4(self, _p4)
    _set5(self, _p5)


def init_7(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)


def init_8(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)


def init_8_7(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _factory7() if _p7 is _missing else _p7)


def init_9(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)


def init_10(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)


def init_11(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)


def init_12(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)


def init_13(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)


def init_14(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12, _p13):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)
    _set13(self, _p13)


def init_15(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12, _p13, _p14):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)
    _set13(self, _p13)
    _set14(self, _p14)


def init_16(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12, _p13, _p14, _p15):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)
    _set13(self, _p13)
    _set14(self, _p14)
    _set15(self, _p15)


def init_17(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12, _p13, _p14, _p15, _p16):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)
    _set13(self, _p13)
    _set14(self, _p14)
    _set15(self, _p15)
    _set16(self, _p16)


def init_21(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12, _p13, _p14, _p15, _p16, _p17, _p18, _p19, _p20):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)
    _set13(self, _p13)
    _set14(self, _p14)
    _set15(self, _p15)
    _set16(self, _p16)
    _set17(self, _p17)
    _set18(self, _p18)
    _set19(self, _p19)
    _set20(self, _p20)


def init_23(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12, _p13, _p14, _p15, _p16, _p17, _p18, _p19, _p20, _p21, _p22):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)
    _set13(self, _p13)
    _set14(self, _p14)
    _set15(self, _p15)
    _set16(self, _p16)
    _set17(self, _p17)
    _set18(self, _p18)
    _set19(self, _p19)
    _set20(self, _p20)
    _set21(self, _p21)
    _set22(self, _p22)


def init_23_21(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12, _p13, _p14, _p15, _p16, _p17, _p18, _p19, _p20, _p21, _p22):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)
    _set13(self, _p13)
    _set14(self, _p14)
    _set15(self, _p15)
    _set16(self, _p16)
    _set17(self, _p17)
    _set18(self, _p18)
    _set19(self, _p19)
    _set20(self, _p20)
    _set21(self, _factory21() if _p21 is _missing else _p21)
    _set22(self, _p22)


def init_32(self, _p0, _p1, _p2, _p3, _p4, _p5, _p6, _p7, _p8, _p9, _p10, _p11, _p12, _p13, _p14, _p15, _p16, _p17, _p18, _p19, _p20, _p21, _p22, _p23, _p24, _p25, _p26, _p27, _p28, _p29, _p30, _p31):
    _set0(self, _p0)
    _set1(self, _p1)
    _set2(self, _p2)
    _set3(self, _p3)
    _set4(self, _p4)
    _set5(self, _p5)
    _set6(self, _p6)
    _set7(self, _p7)
    _set8(self, _p8)
    _set9(self, _p9)
    _set10(self, _p10)
    _set11(self, _p11)
    _set12(self, _p12)
    _set13(self, _p13)
    _set14(self, _p14)
    _set15(self, _p15)
    _set16(self, _p16)
    _set17(self, _p17)
    _set18(self, _p18)
    _set19(self, _p19)
    _set20(self, _p20)
    _set21(self, _p21)
    _set22(self, _p22)
    _set23(self, _p23)
    _set24(self, _p24)
    _set25(self, _p25)
    _set26(self, _p26)
    _set27(self, _p27)
    _set28(self, _p28)
    _set29(self, _p29)
    _set30(self, _p30)
    _set31(self, _p31)


def values_1(self):
    return (self._f0, )


def values_2(self):
    return (self._f0, self._f1, )


def values_3(self):
    return (self._f0, self._f1, self._f2, )


def values_4(self):
    return (self._f0, self._f1, self._f2, self._f3, )


def values_5(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, )


def values_6(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, )


def values_7(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, )


def values_8(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, )


def values_9(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, )


def values_10(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, )


def values_11(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, )


def values_12(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, )


def values_13(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, self._f12, )


def values_14(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, self._f12, self._f13, )


def values_15(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, self._f12, self._f13, self._f14, )


def values_16(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, self._f12, self._f13, self._f14, self._f15, )


def values_17(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, self._f12, self._f13, self._f14, self._f15, self._f16, )


def values_21(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, self._f12, self._f13, self._f14, self._f15, self._f16, self._f17, self._f18, self._f19, self._f20, )


def values_23(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, self._f12, self._f13, self._f14, self._f15, self._f16, self._f17, self._f18, self._f19, self._f20, self._f21, self._f22, )


def values_32(self):
    return (self._f0, self._f1, self._f2, self._f3, self._f4, self._f5, self._f6, self._f7, self._f8, self._f9, self._f10, self._f11, self._f12, self._f13, self._f14, self._f15, self._f16, self._f17, self._f18, self._f19, self._f20, self._f21, self._f22, self._f23, self._f24, self._f25, self._f26, self._f27, self._f28, self._f29, self._f30, self._f31, )
