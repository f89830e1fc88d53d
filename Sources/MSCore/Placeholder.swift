import CH2O
