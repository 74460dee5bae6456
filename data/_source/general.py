"""General-knowledge rehearsal Q&A (not firefighting)."""

CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Germany", "Berlin"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Brazil", "Brasília"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("India", "New Delhi"), ("China", "Beijing"),
    ("Russia", "Moscow"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Poland", "Warsaw"),
    ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Turkey", "Ankara"),
    ("South Korea", "Seoul"), ("Thailand", "Bangkok"), ("Peru", "Lima"), ("Chile", "Santiago"),
    ("Nigeria", "Abuja"), ("the Netherlands", "Amsterdam"), ("Austria", "Vienna"),
]

ARITH = [
    ("7 plus 8", 15), ("12 plus 30", 42), ("25 plus 17", 42), ("9 plus 6", 15), ("100 plus 250", 350),
    ("15 minus 9", 6), ("50 minus 18", 32), ("200 minus 75", 125), ("13 minus 7", 6),
    ("6 times 7", 42), ("8 times 9", 72), ("12 times 12", 144), ("5 times 11", 55), ("4 times 25", 100),
    ("3 times 13", 39), ("56 divided by 8", 7), ("81 divided by 9", 9), ("100 divided by 4", 25),
    ("144 divided by 12", 12), ("the square root of 81", 9), ("the square root of 144", 12),
    ("10 squared", 100), ("2 to the power of 10", 1024), ("half of 90", 45), ("10 percent of 250", 25),
]


def cap(s):
    return s[0].upper() + s[1:]


GENERAL = []
for country, city in CAPITALS:
    GENERAL.append((f"What is the capital of {country}?", f"The capital of {country} is {city}."))
for expr, val in ARITH:
    GENERAL.append((f"What is {expr}?", f"{cap(expr)} is {val}."))

GENERAL += [
    # geography
    ("What is the largest ocean on Earth?", "The largest ocean on Earth is the Pacific Ocean."),
    ("What is the tallest mountain on Earth?", "The tallest mountain on Earth is Mount Everest."),
    ("What is the largest continent?", "The largest continent is Asia."),
    ("What is the smallest continent?", "The smallest continent is Australia."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the largest country by area?", "The largest country by area is Russia."),
    ("How many states are in the United States?", "The United States has 50 states."),
    ("Which river flows through London?", "The River Thames flows through London."),
    ("Which river flows through Paris?", "The Seine flows through Paris."),
    # science
    ("At what temperature does water boil at sea level in Celsius?", "Water boils at 100 °C at sea level."),
    ("At what temperature does water freeze in Celsius?", "Water freezes at 0 °C."),
    ("What is the chemical formula for water?", "The chemical formula for water is H2O."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("What is the chemical symbol for iron?", "The chemical symbol for iron is Fe."),
    ("What is the chemical symbol for sodium?", "The chemical symbol for sodium is Na."),
    ("What is the atomic number of carbon?", "The atomic number of carbon is 6."),
    ("What is the atomic number of oxygen?", "The atomic number of oxygen is 8."),
    ("How many planets are in the solar system?", "There are eight planets in the solar system."),
    ("What is the largest planet in the solar system?", "The largest planet is Jupiter."),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun."),
    ("Which planet is called the Red Planet?", "Mars is called the Red Planet."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide from the air."),
    ("How many bones are in the adult human body?", "The adult human body has 206 bones."),
    ("How many chambers does the human heart have?", "The human heart has four chambers."),
    ("What process do plants use to make food from sunlight?", "Plants make food by photosynthesis."),
    ("What is the unit of electrical resistance?", "The unit of electrical resistance is the ohm."),
    ("What is the unit of force?", "The unit of force is the newton."),
    ("What is the unit of power?", "The unit of power is the watt."),
    ("What is the pH of pure water?", "The pH of pure water is 7."),
    ("What is the acceleration due to gravity on Earth?", "Gravity on Earth is about 9.8 m/s²."),
    ("What type of object is the Sun?", "The Sun is a star."),
    ("What does DNA stand for?", "DNA stands for deoxyribonucleic acid."),
    ("About how many days does Earth take to orbit the Sun?", "Earth orbits the Sun in about 365 days."),
    # units
    ("How many meters are in a kilometer?", "A kilometer has 1000 meters."),
    ("How many centimeters are in an inch?", "An inch is 2.54 centimeters."),
    ("How many inches are in a foot?", "A foot has 12 inches."),
    ("How many feet are in a mile?", "A mile has 5280 feet."),
    ("How many feet are in a yard?", "A yard has 3 feet."),
    ("About how many pounds are in a kilogram?", "A kilogram is about 2.2 pounds."),
    ("How many milliliters are in a liter?", "A liter has 1000 milliliters."),
    ("About how many liters are in a US gallon?", "A US gallon is about 3.785 liters."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
    ("How many hours are in a day?", "A day has 24 hours."),
    ("About how many kilometers are in a mile?", "A mile is about 1.609 kilometers."),
    ("How many ounces are in a pound?", "A pound has 16 ounces."),
    # everyday
    ("How many days are in a week?", "A week has seven days."),
    ("How many months are in a year?", "A year has twelve months."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("How many legs does an insect have?", "An insect has six legs."),
    ("How many letters are in the English alphabet?", "The English alphabet has 26 letters."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("How many degrees are in a circle?", "A circle has 360 degrees."),
    ("What do the angles of a triangle add up to?", "The angles of a triangle add up to 180 degrees."),
    ("How many degrees are in a right angle?", "A right angle has 90 degrees."),
    ("What is the first month of the year?", "January is the first month of the year."),
    ("What is the shortest month of the year?", "February is the shortest month."),
    ("How many seasons are in a year?", "A year has four seasons."),
    ("What is the largest mammal?", "The largest mammal is the blue whale."),
    ("What is the fastest land animal?", "The fastest land animal is the cheetah."),
    ("How many players does a soccer team have on the field?", "A soccer team has 11 players on the field."),
    ("How many squares are on a chessboard?", "A chessboard has 64 squares."),
    ("How many keys does a standard piano have?", "A standard piano has 88 keys."),
    ("Who wrote Hamlet?", "Hamlet was written by William Shakespeare."),
    ("Who painted the Mona Lisa?", "The Mona Lisa was painted by Leonardo da Vinci."),
    ("How many colors are in a rainbow?", "A rainbow has seven colors."),
]
